// Data-parallel collectives for engram: a c10d process group (NCCL on GPU, gloo on CPU) behind
// a C ABI, so Rust (which tch gives no c10d bindings) can rendezvous, broadcast parameters and
// all-reduce gradients exactly as torchrun + DistributedDataParallel would.
//
// Rendezvous is a c10d::TCPStore (rank 0 hosts it) from RANK / WORLD_SIZE / MASTER_ADDR /
// MASTER_PORT, the variables torchrun sets; the caller passes them explicitly.
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef ENGRAM_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <string>
#include <vector>

#include "engram_abi.h"

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  int rank;
  int world;
};

std::vector<at::Tensor> unpack(at::Tensor** ts, int n) {
  TORCH_CHECK(n > 0 && ts != nullptr, "expected at least one tensor");
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; ++i) {
    TORCH_CHECK(ts[i] != nullptr && ts[i]->defined(), "tensor ", i, " is undefined");
    TORCH_CHECK(ts[i]->is_contiguous(), "tensor ", i, " must be contiguous");
    v.push_back(*ts[i]);
  }
  return v;
}

Group* as_group(void* pg) {
  TORCH_CHECK(pg != nullptr, "process group is null (not initialised or already destroyed)");
  return static_cast<Group*>(pg);
}

}  // namespace

// backend: "gloo" or "nccl". device: CUDA ordinal for nccl (ignored for gloo).
ENGRAM_EXPORT int engram_dist_init(const char* backend, const char* master_addr, int port, int rank,
                                   int world, int device, int timeout_s, void** out_pg, char* err,
                                   size_t err_len) {
  return engram::guarded(err, err_len, [&] {
    TORCH_CHECK(out_pg != nullptr, "out_pg is null");
    TORCH_CHECK(world >= 1, "world size must be >= 1, got ", world);
    TORCH_CHECK(rank >= 0 && rank < world, "rank ", rank, " out of range for world size ", world);
    TORCH_CHECK(port > 0 && port < 65536, "invalid port ", port);
    std::string which = backend ? backend : "";
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<size_t>(world);
    so.waitWorkers = true;
    so.timeout = std::chrono::milliseconds(1000LL * std::max(timeout_s, 1));
    auto tcp = c10::make_intrusive<c10d::TCPStore>(master_addr ? master_addr : "127.0.0.1", so);
    auto store = c10::make_intrusive<c10d::PrefixStore>("engram/" + which, tcp);
    auto g = std::make_unique<Group>();
    g->store = tcp;
    g->rank = rank;
    g->world = world;
    if (which == "gloo") {
      auto opts = c10d::ProcessGroupGloo::Options::create();
      opts->timeout = std::chrono::milliseconds(1000LL * std::max(timeout_s, 1));
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      g->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
    } else if (which == "nccl") {
#ifdef ENGRAM_WITH_NCCL
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = std::chrono::milliseconds(1000LL * std::max(timeout_s, 1));
      g->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
#else
      TORCH_CHECK(false, "this kernel library was built without NCCL support");
#endif
    } else {
      TORCH_CHECK(false, "unknown backend '", which, "': expected gloo or nccl");
    }
    *out_pg = g.release();
  });
}

// op: 0 = sum, 1 = average (sum then divide by world size, as DDP does for gradients).
ENGRAM_EXPORT int engram_dist_allreduce(void* pg, at::Tensor** tensors, int n, int op, char* err,
                                        size_t err_len) {
  return engram::guarded(err, err_len, [&] {
    auto* g = as_group(pg);
    auto v = unpack(tensors, n);
    TORCH_CHECK(op == 0 || op == 1, "unknown reduce op ", op);
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp(c10d::ReduceOp::SUM);
    // One collective per tensor keeps gloo happy with mixed dtypes; callers bucket first.
    for (auto& t : v) {
      std::vector<at::Tensor> one{t};
      g->backend->allreduce(one, o)->wait();
      if (op == 1) t.div_(g->world);
    }
  });
}

ENGRAM_EXPORT int engram_dist_broadcast(void* pg, at::Tensor** tensors, int n, int root, char* err,
                                        size_t err_len) {
  return engram::guarded(err, err_len, [&] {
    auto* g = as_group(pg);
    auto v = unpack(tensors, n);
    TORCH_CHECK(root >= 0 && root < g->world, "broadcast root ", root, " out of range");
    c10d::BroadcastOptions o;
    o.rootRank = root;
    for (auto& t : v) {
      std::vector<at::Tensor> one{t};
      g->backend->broadcast(one, o)->wait();
    }
  });
}

ENGRAM_EXPORT int engram_dist_barrier(void* pg, char* err, size_t err_len) {
  return engram::guarded(err, err_len, [&] { as_group(pg)->backend->barrier()->wait(); });
}

ENGRAM_EXPORT int engram_dist_destroy(void* pg, char* err, size_t err_len) {
  return engram::guarded(err, err_len, [&] {
    if (pg == nullptr) return;
    auto* g = static_cast<Group*>(pg);
    g->backend->shutdown();
    delete g;
  });
}
