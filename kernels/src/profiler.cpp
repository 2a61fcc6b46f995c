// libtorch's Kineto profiler (the engine behind torch.profiler) for Rust callers: CPU ops and
// CUDA kernels between start and stop, saved as a Chrome trace that chrome://tracing, Perfetto
// and scripts/gpu/trace_summary.py read. tch has no binding for it.
#include <torch/csrc/autograd/profiler_kineto.h>

#include <set>
#include <string>

#include "engram_abi.h"

namespace {
namespace prof = torch::profiler::impl;

std::set<prof::ActivityType> activities(bool cuda) {
  std::set<prof::ActivityType> a{prof::ActivityType::CPU};
  if (cuda) a.insert(prof::ActivityType::CUDA);
  return a;
}
}  // namespace

// Starts recording (CPU ops, plus CUDA kernels when `cuda` is non-zero). Fails if a profiler is
// already running in this thread.
ENGRAM_EXPORT int engram_profiler_start(int32_t cuda, char* err, size_t err_len) {
  return engram::guarded(err, err_len, [&] {
    TORCH_CHECK(!prof::profilerEnabled(), "a profiler is already running");
    const prof::ProfilerConfig cfg(prof::ProfilerState::KINETO, /*report_input_shapes=*/true);
    torch::autograd::profiler::prepareProfiler(cfg, activities(cuda != 0));
    torch::autograd::profiler::enableProfiler(cfg, activities(cuda != 0));
  });
}

// Stops recording and writes the Chrome trace to `path` (a JSON file).
ENGRAM_EXPORT int engram_profiler_stop(const char* path, char* err, size_t err_len) {
  return engram::guarded(err, err_len, [&] {
    TORCH_CHECK(path != nullptr, "engram_profiler_stop: null path");
    TORCH_CHECK(prof::profilerEnabled(), "no profiler is running");
    auto result = torch::autograd::profiler::disableProfiler();
    TORCH_CHECK(result, "the profiler returned no result");
    result->save(std::string(path));
  });
}
