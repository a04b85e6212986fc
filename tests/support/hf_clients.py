"""huggingface_hub's calls against a Hub (HF_ENDPOINT), for
tests/hub_clients.rs: prints one JSON object with what each call returned
(sha256 of downloaded bytes, the metadata as the library parsed it).

usage: python hf_clients.py REPO OUT_DIR
"""
import hashlib
import json
import os
import sys

import huggingface_hub as hh
from huggingface_hub import HfApi, HfFileSystem


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_shas(root):
    out = {}
    for d, _, files in os.walk(root):
        for name in files:
            p = os.path.join(d, name)
            rel = os.path.relpath(p, root)
            if not rel.startswith(".cache"):
                out[rel] = sha256_file(p)
    return out


def entry(e):
    lfs = getattr(e, "lfs", None)
    return {
        "type": type(e).__name__,
        "path": e.path,
        "size": getattr(e, "size", None),
        "oid": getattr(e, "blob_id", None) or getattr(e, "tree_id", None),
        "lfs_sha256": lfs.sha256 if lfs else None,
        "lfs_size": lfs.size if lfs else None,
    }


def main():
    repo, out = sys.argv[1], sys.argv[2]
    api = HfApi()
    r = {"version": hh.__version__}

    refs = api.list_repo_refs(repo)
    r["refs"] = [[b.name, b.ref, b.target_commit] for b in refs.branches]
    commit = refs.branches[0].target_commit

    commits = api.list_repo_commits(repo)
    r["commits"] = [[c.commit_id, c.title, c.created_at.isoformat()] for c in commits]

    short = commit[:7]
    r["short_info_sha"] = api.model_info(repo, revision=short).sha

    info = api.model_info(repo, files_metadata=True)
    r["siblings"] = {
        s.rfilename: {
            "size": s.size,
            "blob_id": s.blob_id,
            "lfs_sha256": s.lfs.sha256 if s.lfs else None,
            "lfs_size": s.lfs.size if s.lfs else None,
        }
        for s in info.siblings
    }

    paths = ["Demo-Q4_1.gguf", "README.md", "sub", "no/such/file"]
    r["paths_info"] = [entry(e) for e in api.get_paths_info(repo, paths, revision=short)]

    snap = hh.snapshot_download(repo, local_dir=os.path.join(out, "snapshot"))
    r["snapshot"] = tree_shas(snap)

    one = hh.hf_hub_download(repo, "Demo-Q8_0.gguf", revision=short, cache_dir=os.path.join(out, "cache"))
    r["hf_hub_download"] = sha256_file(one)
    text = hh.hf_hub_download(repo, "README.md", cache_dir=os.path.join(out, "cache"))
    r["hf_hub_download_git_file"] = sha256_file(text)

    fs = HfFileSystem()
    r["fs_ls"] = sorted(e["name"] for e in fs.ls(repo, detail=True))
    r["fs_info"] = {k: fs.info(f"{repo}/{k}").get("size") for k in ["README.md", "Demo-Q4_1.gguf"]}
    with fs.open(f"{repo}/Demo-Q4_1.gguf", "rb") as f:
        r["fs_read"] = hashlib.sha256(f.read()).hexdigest()
    r["fs_range"] = fs.read_block(f"{repo}/Demo-Q4_1.gguf", 4, 8).hex()
    r["fs_short_revision"] = hashlib.sha256(
        fs.cat_file(f"{repo}@{short}/Demo-Q8_0.gguf")
    ).hexdigest()
    print(json.dumps(r))


if __name__ == "__main__":
    main()
