//! The names of a split GGUF's files: `{prefix}-{index:05}-of-{count:05}.gguf`,
//! as llama.cpp's `gguf-split` writes them. The one parser of these names;
//! the Hub listing, the header checks, the quant labels and the local file
//! set all read them through it.

use std::path::{Path, PathBuf};

/// A shard's file name, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardName<'a> {
    /// Everything before `-NNNNN-of-NNNNN.gguf`, directories included.
    pub prefix: &'a str,
    pub index: u32,
    pub count: u32,
}

impl<'a> ShardName<'a> {
    /// Any name of the shape, five digits each, even one whose numbers
    /// cannot be (shard 4 of 3): the header check reports those.
    pub fn parse(path: &'a str) -> Option<Self> {
        let stem = path.strip_suffix(".gguf")?;
        let (rest, count) = stem.rsplit_once("-of-")?;
        let (prefix, index) = rest.rsplit_once('-')?;
        let five = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
        if !five(index) || !five(count) || prefix.is_empty() {
            return None;
        }
        Some(ShardName {
            prefix,
            index: index.parse().ok()?,
            count: count.parse().ok()?,
        })
    }

    /// A shard that can exist: `1 ≤ index ≤ count`.
    pub fn parse_valid(path: &'a str) -> Option<Self> {
        Self::parse(path).filter(|s| s.index >= 1 && s.index <= s.count)
    }

    /// The file name of shard `index` of the same set.
    pub fn sibling(&self, index: u32) -> String {
        format!("{}-{index:05}-of-{:05}.gguf", self.prefix, self.count)
    }
}

/// Every shard's path from any one of them (`…-00002-of-00003.gguf` gives
/// three paths); an unsplit file gives itself.
pub fn shard_paths(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    match name.as_deref().and_then(ShardName::parse_valid) {
        Some(shard) => (1..=shard.count)
            .map(|n| path.with_file_name(shard.sibling(n)))
            .collect(),
        None => vec![path.to_path_buf()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names() {
        let parts = |p| ShardName::parse_valid(p).map(|s| (s.prefix.to_string(), s.index, s.count));
        assert_eq!(
            parts("Q4/m-00002-of-00003.gguf"),
            Some(("Q4/m".to_string(), 2, 3))
        );
        assert_eq!(parts("m-2-of-3.gguf"), None);
        assert_eq!(parts("m-00004-of-00003.gguf"), None);
        assert_eq!(parts("m.gguf"), None);
    }
}
