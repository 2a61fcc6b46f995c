// The CUDA caching allocator's byte counters (what torch.cuda.memory_allocated,
// max_memory_allocated, memory_reserved and max_memory_reserved read) for Rust callers: tch
// exposes none of them, and nvidia-smi's per-process figure also counts the CUDA context and
// the allocator's cached free blocks.
#include <c10/core/Allocator.h>
#include <c10/cuda/CUDACachingAllocator.h>

#include "engram_abi.h"

// out[0..4] = allocated now, allocated peak, reserved now, reserved peak (bytes) on `device`;
// with reset_peak non-zero the peaks are then reset to the current values
// (torch.cuda.reset_peak_memory_stats).
ENGRAM_EXPORT int engram_cuda_memory_stats(int32_t device, int32_t reset_peak, int64_t* out, char* err,
                                           size_t err_len) {
  return engram::guarded(err, err_len, [&] {
    TORCH_CHECK(out != nullptr, "engram_cuda_memory_stats: null output");
    TORCH_CHECK(device >= 0 && device < c10::cuda::device_count(), "engram_cuda_memory_stats: no CUDA device ",
                device, " (", static_cast<int>(c10::cuda::device_count()), " present)");
    const auto idx = static_cast<c10::DeviceIndex>(device);
    const auto st = c10::cuda::CUDACachingAllocator::getDeviceStats(idx);
    const auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    out[0] = st.allocated_bytes[agg].current;
    out[1] = st.allocated_bytes[agg].peak;
    out[2] = st.reserved_bytes[agg].current;
    out[3] = st.reserved_bytes[agg].peak;
    if (reset_peak != 0) c10::cuda::CUDACachingAllocator::resetPeakStats(idx);
  });
}
