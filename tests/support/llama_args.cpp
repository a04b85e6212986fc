// llama.cpp's own checks of what onboard writes, called in the xllamacpp
// wheel's library and built against the headers of the same llama.cpp
// version (tests/support/llama_args.rs compiles it at test time). The
// wheel's library is a Python extension that needs the interpreter's
// symbols, so this is a shared library that tests/support/llama_args.py
// loads into Python after importing xllamacpp.
//
//   llama_args args ARG...      llama-server's argument parser
//                               (common_params_parse, server mode); exit 0
//                               when it accepts, 1 when it refuses
//   llama_args preset FILE.ini  llama-server's `--models-preset` loader; each
//                               section's arguments go through the parser too;
//                               prints `[name] ARG...` per section
//   llama_args download ARG...  the parser, then llama-server's model
//                               handler (the `-hf` downloader); prints
//                               `model: PATH` of the file it downloaded
#include "arg.h"
#include "common.h"
#include "preset.h"

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

static bool parse(std::vector<std::string> args, common_params & params) {
    args.insert(args.begin(), "llama-server");
    std::vector<char *> argv;
    for (auto & a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    return common_params_parse((int) args.size(), argv.data(), params, LLAMA_EXAMPLE_SERVER, nullptr);
}

static int run(int argc, char ** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: llama_args args|preset|download ...\n");
        return 2;
    }
    const std::string mode = argv[1];
    std::vector<std::string> rest(argv + 2, argv + argc);
    try {
        if (mode == "args") {
            common_params params;
            if (!parse(rest, params)) {
                return 1;
            }
            printf("accepted: ctx %d, model %s\n", params.n_ctx, params.model.path.c_str());
            return 0;
        }
        if (mode == "preset" && rest.size() == 1) {
            common_preset_context ctx(LLAMA_EXAMPLE_SERVER);
            common_preset global;
            common_presets presets = ctx.load_from_ini(rest[0], global);
            int refused = 0;
            for (const auto & [name, preset] : presets) {
                std::vector<std::string> args = preset.to_args();
                if (!args.empty()) {
                    args.erase(args.begin()); // the program name
                }
                printf("[%s]", name.c_str());
                for (const auto & a : args) {
                    printf(" %s", a.c_str());
                }
                printf("\n");
                common_params params;
                if (!parse(args, params)) {
                    fprintf(stderr, "preset [%s] refused by the parser\n", name.c_str());
                    refused++;
                }
            }
            return refused == 0 && !presets.empty() ? 0 : 1;
        }
        if (mode == "download") {
            common_params params;
            if (!parse(rest, params)) {
                return 1;
            }
            common_models_handler handler = common_models_handler_init(params, LLAMA_EXAMPLE_SERVER);
            common_models_handler_apply(handler, params);
            if (params.model.path.empty()) {
                fprintf(stderr, "no model path after the download\n");
                return 1;
            }
            printf("model: %s\n", params.model.path.c_str());
            return 0;
        }
    } catch (const std::exception & e) {
        fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
}

extern "C" int onboard_llama_args(int argc, char ** argv) {
    int rc = run(argc, argv);
    fflush(stdout);
    fflush(stderr);
    return rc;
}
