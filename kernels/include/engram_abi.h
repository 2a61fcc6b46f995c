// The C ABI between libengram_kernels.so and engram-core (crates/engram-core/src/kernels.rs).
// Every entry point returns 0 on success; on failure a non-zero code and a NUL-terminated
// message in `err`. C++ exceptions are caught at this boundary and never reach Rust.
#pragma once
#include <ATen/ATen.h>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>

#define ENGRAM_EXPORT extern "C" __attribute__((visibility("default")))

namespace engram {

inline void write_err(char* err, size_t len, const char* msg) {
  if (err && len) {
    std::snprintf(err, len, "%s", msg);
  }
}

// Runs `f`, turning any exception into (code 1, message).
template <class F>
int guarded(char* err, size_t err_len, F&& f) {
  try {
    f();
    return 0;
  } catch (const c10::Error& e) {
    write_err(err, err_len, e.what_without_backtrace());
  } catch (const std::exception& e) {
    write_err(err, err_len, e.what());
  } catch (...) {
    write_err(err, err_len, "unknown C++ exception");
  }
  return 1;
}

}  // namespace engram
