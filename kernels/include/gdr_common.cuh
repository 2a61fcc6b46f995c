// Device helpers shared by the chunked gated-delta-rule kernels (gdr_*.cu).
//
// Every stage works on 64-row chunk tiles held in shared memory. Matrix products go through
// `mm`: tensor cores (WMMA, fp32 accumulation) for bf16/fp16 operands, plain fp32 FMA for fp32
// operands (tf32 would miss the fp32 accuracy target of 1e-4 on outputs).
#pragma once
#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>
#include "gdr.h"

namespace engram {
namespace gdr {

constexpr int kC = 64;         // chunk length (rows of every chunk tile)
constexpr int kThreads = 512;  // threads per block, all kernels (16 warps: the stages are latency-bound)
constexpr int kWarps = kThreads / 32;

template <class T> struct Pad { static constexpr int t = 8, f = 4; };      // elements of row padding
template <> struct Pad<float> { static constexpr int t = 0, f = 0; };      // fp32 path: smem is tight

template <class T> __device__ __forceinline__ float to_f(T x);
template <> __device__ __forceinline__ float to_f<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f<__half>(__half x) { return __half2float(x); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Bump allocator for one dynamic shared-memory block; identical on host (sizing) and device.
struct SmemPlan {
  size_t off = 0;
  __host__ __device__ size_t take(size_t bytes) {
    size_t o = off;
    off += (bytes + 127) / 128 * 128;
    return o;
  }
};

// Where a block of a per-chunk kernel (grid B*H*NT, one block per (batch, head, chunk)) works.
struct ChunkBlock {
  int Lc;        // rows of the chunk inside the sequence (fewer than kC only in the tail chunk)
  int t0, hh, b; // its first time step, head and batch (the coordinates of the TMA boxes)
  int64_t row0;  // its first row (b, t0, head) flattened over the user's [B,T,H]
  int64_t cidx;  // (b, head, chunk) flattened over the [B,H,NT,...] intermediates
  __device__ explicit ChunkBlock(const Params& p) : ChunkBlock(p, blockIdx.x) {}
  // the chunk of flat index blk over [B, H, NT] (persistent kernels walk several). The divisions
  // are 32-bit wherever blk fits: the 64-bit routine took about 700 cycles at every chunk's head
  // of the persistent gradient kernel, where the other warps wait for the slowest.
  __device__ ChunkBlock(const Params& p, int64_t blk) {
    int c;
    int64_t bh;
    if (blk <= (int64_t)UINT32_MAX) {
      const uint32_t x = (uint32_t)blk, q = x / (uint32_t)p.NT;
      c = (int)(x - q * (uint32_t)p.NT);
      bh = q;
    } else {
      c = (int)(blk % p.NT);
      bh = blk / p.NT;
    }
    // bh < B H, and B T H < 2^40 with T >= NT: 32 bits whenever blk's are
    if (bh <= (int64_t)UINT32_MAX) {
      const uint32_t y = (uint32_t)bh, bq = y / (uint32_t)p.H;
      hh = (int)(y - bq * (uint32_t)p.H);
      b = (int)bq;
    } else {
      hh = (int)(bh % p.H);
      b = (int)(bh / p.H);
    }
    t0 = c * kC;
    Lc = min(kC, p.T - t0);
    row0 = ((int64_t)b * p.T + t0) * p.H + hh;
    cidx = bh * p.NT + c;
  }
};

// ---- async copies (16 bytes, zero-fill when the source row is past the sequence end) ----
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
// 4 bytes (strided scalars such as beta [B,T,H]), zero-filled when !valid
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem, bool valid) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  int n = valid ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Copies a rows x cols tile (row stride gstride elements) into smem (row stride lds);
// rows >= valid_rows are zero-filled. cols * sizeof(T) must be a multiple of 16.
template <class T>
__device__ __forceinline__ void load_tile_async(T* s, int lds, const T* g, int64_t gstride, int rows, int cols,
                                                int valid_rows) {
  constexpr int V = 16 / sizeof(T);
  const int vpr = cols / V;
  for (int i = threadIdx.x; i < rows * vpr; i += kThreads) {
    int r = i / vpr, c = (i - r * vpr) * V;
    bool ok = r < valid_rows;
    const T* src = g + (ok ? (int64_t)r * gstride + c : 0);
    cp_async16(s + r * lds + c, src, ok);
  }
}

// Block-wide cp.async of a rows x (VPR * 16 bytes) tile; rows >= valid are zero-filled. VPR is
// a power of two (lvpr its log2) that divides blockDim.x, so each thread keeps one column and
// steps down the rows by pointer increments: about 3 instructions per 16-byte copy instead of
// an index split and a 64-bit multiply (the scans issue ~36 copies per thread per chunk).
template <class T>
__device__ __forceinline__ void copy_tile(T* s, int lds, const T* g, int64_t gstride, int rows, int lvpr, int valid) {
  constexpr int VEC = 16 / sizeof(T);
  // blockDim.x read through volatile asm: the scans call this once per chunk, and a hoisted copy
  // of every tile's strides would hold ~20 registers across the whole sequential loop (spills)
  unsigned nt;
  asm volatile("mov.u32 %0, %%ntid.x;" : "=r"(nt));
  const int step = (int)nt >> lvpr, c = (threadIdx.x & ((1 << lvpr) - 1)) * VEC;
  int r = threadIdx.x >> lvpr;
  const T* src = g + (int64_t)r * gstride + c;
  T* dst = s + r * lds + c;
  const int64_t sstep = (int64_t)step * gstride;
  const int dstep = step * lds;
#pragma unroll 1
  for (; r < rows; r += step, src += sstep, dst += dstep) {
    const bool ok = r < valid;
    cp_async16(dst, ok ? src : g, ok);
  }
}

__host__ __device__ constexpr int ilog2(int x) { return x <= 1 ? 0 : 1 + ilog2(x >> 1); }

// Stores a rows x cols fp32 smem tile to global as T (times alpha, times rowscale[r] if given);
// rows >= valid_rows are skipped.
template <class T>
__device__ __forceinline__ void store_tile(T* g, int64_t gstride, const float* s, int lds, int rows, int cols,
                                           int valid_rows, float alpha = 1.f, const float* rowscale = nullptr) {
  constexpr int V = 16 / sizeof(T);
  const int vpr = cols / V;
  for (int i = threadIdx.x; i < rows * vpr; i += kThreads) {
    int r = i / vpr, c = (i - r * vpr) * V;
    if (r >= valid_rows) continue;
    float a = rowscale ? alpha * rowscale[r] : alpha;
    alignas(16) T tmp[V];
#pragma unroll
    for (int e = 0; e < V; ++e) tmp[e] = from_f<T>(a * s[r * lds + c + e]);
    *reinterpret_cast<int4*>(g + (int64_t)r * gstride + c) = *reinterpret_cast<const int4*>(tmp);
  }
}
// Same for a T smem tile.
template <class T>
__device__ __forceinline__ void store_tile_t(T* g, int64_t gstride, const T* s, int lds, int rows, int cols,
                                             int valid_rows) {
  constexpr int V = 16 / sizeof(T);
  const int vpr = cols / V;
  for (int i = threadIdx.x; i < rows * vpr; i += kThreads) {
    int r = i / vpr, c = (i - r * vpr) * V;
    if (r >= valid_rows) continue;
    *reinterpret_cast<int4*>(g + (int64_t)r * gstride + c) = *reinterpret_cast<const int4*>(s + r * lds + c);
  }
}

// ---- block-wide matrix product: C (fp32, M x N) = [C +] alpha * op(A) * op(B) ----
// op(A) is M x Kd: A stored row-major M x Kd (lda) or, when TA, Kd x M. op(B) is Kd x N: B
// stored Kd x N or, when TB, N x Kd. M, N, Kd are multiples of 16. Each 16x16 output tile is
// owned by one warp, always the same one for the same (M, N): two products into the same C
// issued back to back by the block need no barrier between them. `woff` rotates the owners, so
// that two small independent products can run on disjoint warps.
template <class T, bool TA, bool TB>
struct MM {
  static __device__ __forceinline__ void run(float* C, int ldc, const T* A, int lda, const T* B, int ldb, int M, int N,
                                             int Kd, bool acc, float alpha, int woff) {
    using namespace nvcuda;
    using LA = typename std::conditional<TA, wmma::col_major, wmma::row_major>::type;
    using LB = typename std::conditional<TB, wmma::col_major, wmma::row_major>::type;
    const int warp = ((threadIdx.x >> 5) + kWarps - woff) % kWarps;
    const int tn = N >> 4, tiles = (M >> 4) * tn;
    for (int t = warp; t < tiles; t += kWarps) {
      const int m0 = (t / tn) << 4, n0 = (t % tn) << 4;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
      wmma::fill_fragment(c, 0.f);
#pragma unroll 4
      for (int k0 = 0; k0 < Kd; k0 += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, LA> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, LB> b;
        wmma::load_matrix_sync(a, TA ? A + (int64_t)k0 * lda + m0 : A + (int64_t)m0 * lda + k0, lda);
        wmma::load_matrix_sync(b, TB ? B + (int64_t)n0 * ldb + k0 : B + (int64_t)k0 * ldb + n0, ldb);
        wmma::mma_sync(c, a, b, c);
      }
      float* cp = C + (int64_t)m0 * ldc + n0;
      if (acc) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> old;
        wmma::load_matrix_sync(old, cp, ldc, wmma::mem_row_major);
#pragma unroll
        for (int e = 0; e < old.num_elements; ++e) c.x[e] = old.x[e] + alpha * c.x[e];
      } else if (alpha != 1.f) {
#pragma unroll
        for (int e = 0; e < c.num_elements; ++e) c.x[e] *= alpha;
      }
      wmma::store_matrix_sync(cp, c, ldc, wmma::mem_row_major);
    }
  }
};

// fp32 operands: FMA, 4x4 outputs per thread (fixed owner per output, as above).
template <bool TA, bool TB>
struct MM<float, TA, TB> {
  static __device__ __forceinline__ void run(float* C, int ldc, const float* A, int lda, const float* B, int ldb,
                                             int M, int N, int Kd, bool acc, float alpha, int /*woff*/) {
    const int tn = N >> 2, tiles = (M >> 2) * tn;
    for (int t = threadIdx.x; t < tiles; t += kThreads) {
      const int m0 = (t / tn) << 2, n0 = (t % tn) << 2;
      float r[4][4] = {};
      for (int k = 0; k < Kd; ++k) {
        float a[4], b[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          a[i] = TA ? A[(int64_t)k * lda + m0 + i] : A[(int64_t)(m0 + i) * lda + k];
          b[i] = TB ? B[(int64_t)(n0 + i) * ldb + k] : B[(int64_t)k * ldb + n0 + i];
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) r[i][j] = fmaf(a[i], b[j], r[i][j]);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          float* p = C + (int64_t)(m0 + i) * ldc + n0 + j;
          *p = acc ? *p + alpha * r[i][j] : alpha * r[i][j];
        }
    }
  }
};

template <class T, bool TA = false, bool TB = false>
__device__ __forceinline__ void mm(float* C, int ldc, const T* A, int lda, const T* B, int ldb, int M, int N, int Kd,
                                   bool acc = false, float alpha = 1.f, int woff = 0) {
  MM<T, TA, TB>::run(C, ldc, A, lda, B, ldb, M, N, Kd, acc, alpha, woff);
}

// f(r, c) for every element of a rows x cols tile: warps over rows, lanes over columns (no
// integer division, consecutive shared-memory addresses within a warp).
template <class F>
__device__ __forceinline__ void for2d(int rows, int cols, F f) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int r = warp; r < rows; r += kWarps)
    for (int c = lane; c < cols; c += 32) f(r, c);
}

// out[r] += coef(r) * sum_c A[r][c] * B[r][c] for r < rows; one warp per row.
template <class TA_, class TB_, class F>
__device__ __forceinline__ void row_dot_add(float* out, const TA_* A, int lda, const TB_* B, int ldb, int rows,
                                            int cols, F coef) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int r = warp; r < rows; r += kWarps) {
    float s = 0.f;
    for (int c = lane; c < cols; c += 32) s += to_f(A[r * lda + c]) * to_f(B[r * ldb + c]);
#pragma unroll
    for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) out[r] += coef(r) * s;
  }
}

// out[r] += sum_c A[r][c] (one warp per row).
__device__ __forceinline__ void row_sum_add(float* out, const float* A, int lda, int rows, int cols) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int r = warp; r < rows; r += kWarps) {
    float s = 0.f;
    for (int c = lane; c < cols; c += 32) s += A[r * lda + c];
#pragma unroll
    for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) out[r] += s;
  }
}

// out[c] = sum_r w(r) A[r][c] (one thread per column; consecutive threads read consecutive words).
template <class W>
__device__ __forceinline__ void col_sum(float* out, const float* A, int lda, int rows, int cols, W w) {
  for (int c = threadIdx.x; c < cols; c += kThreads) {
    float s = 0.f;
    for (int r = 0; r < rows; ++r) s += w(r) * A[r * lda + c];
    out[c] = s;
  }
}

// kt = K e^{G_last - G} and qg = Q e^G of chunk cidx, which only the shared-memory scans read
// (written once per chunk, not per V-block): from the chunk's raw k and q tiles in shared memory
// (row stride ld) and its cumulative log decay gS; 16-byte stores, one exp per row. Block-wide.
// K is p.K, passed so that a kernel compiled for one K folds it.
template <class T>
__device__ __forceinline__ void store_decayed_kq(const Params& p, const T* kS, const T* qS, int ld, int K,
                                                 const float* gS, int64_t cidx) {
  const float gl = gS[kC - 1];
  T* ktg = static_cast<T*>(p.kt) + cidx * kC * K;
  T* qgg = static_cast<T*>(p.qg) + cidx * kC * K;
  constexpr int VEC = 16 / sizeof(T);
  const int vpr = K / VEC;
  for (int e = threadIdx.x; e < kC * vpr; e += blockDim.x) {
    const int i = e / vpr, j = (e - i * vpr) * VEC;
    const float fk = __expf(gl - gS[i]), fq = __expf(gS[i]);
    alignas(16) T tk[VEC], tq[VEC];
#pragma unroll
    for (int x = 0; x < VEC; ++x) {
      tk[x] = from_f<T>(to_f(kS[i * ld + j + x]) * fk);
      tq[x] = from_f<T>(to_f(qS[i * ld + j + x]) * fq);
    }
    *reinterpret_cast<int4*>(ktg + i * K + j) = *reinterpret_cast<const int4*>(tk);
    *reinterpret_cast<int4*>(qgg + i * K + j) = *reinterpret_cast<const int4*>(tq);
  }
}

// The 6 16 x 16 blocks of A above the diagonal zeroed by threads tid = 0 .. nt-1; no barrier.
template <class AIdx>
__device__ __forceinline__ void zero_upper_blocks(float* A, AIdx ai, int tid, int nt) {
  for (int e = tid; e < 6 * 64; e += nt) {  // 64 float4 each
    const int blk = e >> 6, r = (e >> 2) & 15, q = e & 3;
    const int bi = blk < 3 ? 0 : blk < 5 ? 1 : 2, bj = blk < 3 ? blk + 1 : blk < 5 ? blk - 1 : 3;
    *reinterpret_cast<float4*>(A + ai(16 * bi + r, 16 * bj + 4 * q)) = make_float4(0.f, 0.f, 0.f, 0.f);
  }
}
// The first step of invert_unit_lower_by: the four 16 x 16 diagonal blocks of A by forward
// substitution (threads 0..63, one column each); no barrier.
template <class AIdx>
__device__ __forceinline__ void invert_diagonal_blocks(const float* L, int ldl, float* A, AIdx ai, int tid) {
  if (tid < kC) {
    const int base = (tid >> 4) * 16, col = tid & 15;
    float colv[16];
#pragma unroll
    for (int r = 0; r < 16; ++r) {
      float lr[16];  // the row's 16 entries of the block as four 16-byte loads (ldl % 4 == 0)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float4 v = *reinterpret_cast<const float4*>(L + (base + r) * ldl + base + 4 * q);
        lr[4 * q] = v.x, lr[4 * q + 1] = v.y, lr[4 * q + 2] = v.z, lr[4 * q + 3] = v.w;
      }
      float a = r == col ? 1.f : 0.f;
#pragma unroll
      for (int m = 0; m < r; ++m) a -= lr[m] * colv[m];
      colv[r] = r < col ? 0.f : a;
    }
#pragma unroll
    for (int r = 0; r < 16; ++r) A[ai(base + r, base + col)] = colv[r];
  }
}
// s += x * y for a float4 y (one scalar of L or A against a row quad).
__device__ __forceinline__ void fma4(float4& s, float x, const float4& y) {
  s.x = fmaf(x, y.x, s.x);
  s.y = fmaf(x, y.y, s.y);
  s.z = fmaf(x, y.z, s.z);
  s.w = fmaf(x, y.w, s.w);
}
// A = (I + L)^-1 for a strictly lower-triangular C x C fp32 matrix L, both in shared memory:
// L with leading dimension ldl, A's element (i, j) at A[ai(i, j)], where ai keeps 4-aligned
// column quads contiguous and 16-byte aligned (row-major with a padded stride, or such a layout
// with the quads of a row permuted), in fp32: the four 16x16 diagonal blocks by forward
// substitution (one thread per column), then the block diagonals below by
// A_ij = -A_ii sum_{k=j}^{i-1} L_ik A_kj at distance 1, 2, 3. Blocks above the diagonal are
// zeroed. Each thread of the stages makes one row and four columns (a float4 of A or T per term
// and one scalar of L shared by the four), so shared-memory loads are 2 per 4 FMA instead of 2
// per FMA; the sums run in the same order as one output per thread would, so the result is
// bitwise the same. tri: 768 floats of scratch. Threads tid = 0 .. nt-1 (nt >= 64) take part;
// sync() is their barrier, and the last step is one.
template <class AIdx, class Sync>
__device__ __forceinline__ void invert_unit_lower_by(const float* L, int ldl, float* A, AIdx ai, float* tri, int tid,
                                                     int nt, Sync sync) {
  zero_upper_blocks(A, ai, tid, nt);
  invert_diagonal_blocks(L, ldl, A, ai, tid);
  sync();
  for (int d = 1; d < 4; ++d) {
    const int items = (4 - d) * 64;  // block pairs x 16 rows x 4 column quads
    for (int e = tid; e < items; e += nt) {  // T_ij = sum_k L_ik A_kj
      const int pr = e >> 6, r = (e >> 2) & 15, c = (e & 3) * 4, bj = pr, bi = pr + d;
      const float* Lr = L + (16 * bi + r) * ldl;
      float4 s = make_float4(0.f, 0.f, 0.f, 0.f);
      for (int kb = bj; kb < bi; ++kb)  // unrolled by block: the loads of 16 terms go out together
#pragma unroll
        for (int mm = 0; mm < 16; ++mm) {
          const int m = 16 * kb + mm;
          fma4(s, Lr[m], *reinterpret_cast<const float4*>(A + ai(m, 16 * bj + c)));
        }
      *reinterpret_cast<float4*>(tri + (pr << 8) + (r << 4) + c) = s;
    }
    sync();
    for (int e = tid; e < items; e += nt) {  // A_ij = -A_ii T_ij
      const int pr = e >> 6, r = (e >> 2) & 15, c = (e & 3) * 4, bj = pr, bi = pr + d;
      float4 s = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
      for (int m = 0; m < 16; ++m)
        fma4(s, A[ai(16 * bi + r, 16 * bi + m)], *reinterpret_cast<const float4*>(tri + (pr << 8) + (m << 4) + c));
      *reinterpret_cast<float4*>(A + ai(16 * bi + r, 16 * bj + c)) = make_float4(-s.x, -s.y, -s.z, -s.w);
    }
    sync();
  }
}
// The block-wide form: L and A row-major with leading dimension ld; every thread calls it.
__device__ __forceinline__ void invert_unit_lower(const float* L, float* A, int ld, float* tri) {
  invert_unit_lower_by(L, ld, A, [ld](int i, int j) { return i * ld + j; }, tri, (int)threadIdx.x, (int)blockDim.x,
                       [] { __syncthreads(); });
}

// ---- host side, shared by every launcher ----
// Device attributes, queried once per device and attribute: a forward+backward asks a dozen
// times, and each query is a driver call.
inline int device_attribute(cudaDeviceAttr a) {
  constexpr int kDevs = 64, kAttrs = 256;
  static std::atomic<int> cache[kDevs][kAttrs];  // 0: not yet asked (the value is stored + 1)
  int dev = 0;
  C10_CUDA_CHECK(cudaGetDevice(&dev));
  const bool cached = dev >= 0 && dev < kDevs && (int)a >= 0 && (int)a < kAttrs;
  if (cached) {
    const int c = cache[dev][a].load(std::memory_order_relaxed);
    if (c != 0) return c - 1;
  }
  int v = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, a, dev));
  if (cached) cache[dev][a].store(v + 1, std::memory_order_relaxed);
  return v;
}
// Raises a kernel's dynamic shared-memory limit to `smem` on the current device, once per
// (kernel, device, size): the attribute call costs a few microseconds on every launch otherwise.
// The thread's last entry is checked first, without the lock: a training loop launches the same
// few kernels, and the event-timed forward pays this check in full.
inline void allow_dynamic_smem(const void* kern, size_t smem) {
  struct Entry {
    const void* kern;
    int dev;
    size_t smem;
  };
  static std::mutex mu;
  static std::vector<Entry> done;
  thread_local Entry last{nullptr, -1, 0};
  int dev = 0;
  C10_CUDA_CHECK(cudaGetDevice(&dev));
  if (last.kern == kern && last.dev == dev && last.smem >= smem) return;
  std::lock_guard<std::mutex> lock(mu);
  for (const Entry& e : done)
    if (e.kern == kern && e.dev == dev && e.smem >= smem) {
      last = e;
      return;
    }
  C10_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  done.push_back({kern, dev, smem});
  last = done.back();
}
inline size_t max_smem_per_block() { return (size_t)device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin); }

// Launches `kern(p, extra...)` on `blocks` blocks of `threads` with `smem` bytes of dynamic shared memory,
// after checking that both fit; `what` names the stage in the error messages.
// It calls cudaLaunchKernel itself: the <<<>>> launch's configuration push and pop took about
// 1.5 of the 5-7 us that one launch costs on the host (H100 hosts, inside PyTorch), which the
// event-timed forward pays in full. The arguments are converted to the kernel's own parameter
// types first, as <<<>>> would, so the argument array always matches the kernel.
template <class... KArgs, class... Extra>
void launch_checked(void (*kern)(KArgs...), int64_t blocks, int threads, size_t smem, cudaStream_t s,
                    const Params& p, const char* what, const Extra&... extra) {
  static_assert(sizeof...(KArgs) == 1 + sizeof...(Extra), "launch_checked: one argument per kernel parameter");
  const size_t maxs = max_smem_per_block();
  TORCH_CHECK(smem <= maxs, what, ": K=", p.K, ", V=", p.V, " needs ", smem,
              " bytes of shared memory, the device has ", maxs);
  TORCH_CHECK(blocks < (int64_t)INT32_MAX, what, ": too many blocks");
  allow_dynamic_smem(reinterpret_cast<const void*>(kern), smem);
  std::tuple<std::decay_t<KArgs>...> args(p, extra...);
  std::apply(
      [&](auto&... a) {
        void* ptrs[] = {static_cast<void*>(&a)...};
        C10_CUDA_CHECK(cudaLaunchKernel(reinterpret_cast<const void*>(kern), dim3((unsigned)blocks), dim3(threads),
                                        ptrs, smem, s));
      },
      args);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Runs Launch<T, K, V>::run(p, s) for 16-bit inputs with K, V in {64, 128}, the shapes the
// register-resident per-chunk kernels are built for, and returns true; returns false (the caller
// runs its shared-memory kernel) for fp32, for other K or V, and when the environment variable
// `knob` is "smem".
template <template <class, int, int> class Launch, class T>
bool launch_kv(const Params& p, cudaStream_t s) {
  if (p.K == 64 && p.V == 64) return Launch<T, 64, 64>::run(p, s), true;
  if (p.K == 64 && p.V == 128) return Launch<T, 64, 128>::run(p, s), true;
  if (p.K == 128 && p.V == 64) return Launch<T, 128, 64>::run(p, s), true;
  if (p.K == 128 && p.V == 128) return Launch<T, 128, 128>::run(p, s), true;
  return false;
}
// Whether the environment variable `knob` is set to `value`.
inline bool knob_is(const char* knob, const char* value) {
  const char* e = std::getenv(knob);
  return e != nullptr && std::strcmp(e, value) == 0;
}
// Whether the environment variable `knob` asks for a stage's shared-memory kernel ("smem").
inline bool knob_says_smem(const char* knob) { return knob_is(knob, "smem"); }
// Whether a register-resident per-chunk stage runs: 16-bit inputs, K and V in {64, 128}, and
// its knob not "smem".
inline bool mma_stage_applies(DType dt, const Params& p, const char* knob) {
  if (dt == kF32 || (p.K != 64 && p.K != 128) || (p.V != 64 && p.V != 128)) return false;
  return !knob_says_smem(knob);
}
template <template <class, int, int> class Launch>
bool launch_16bit_kv(DType dt, const Params& p, cudaStream_t s, const char* knob) {
  if (!mma_stage_applies(dt, p, knob)) return false;
  return dt == kBF16 ? launch_kv<Launch, __nv_bfloat16>(p, s) : launch_kv<Launch, __half>(p, s);
}

// V-block width of the shared-memory scans (forward and backward alike). One block fits per SM,
// so the cost is about waves x per-chunk latency; VB = 16 halves the work per chunk but doubles
// the blocks, so it pays only when it adds no wave. ENGRAM_GDR_VB=16|32 forces a width (tests
// use it to cover both paths).
inline int smem_scan_width(const Params& p) {
  const int sms = device_attribute(cudaDevAttrMultiProcessorCount);
  int vb = 16;
  if (p.V % 32 == 0) {
    const int64_t b32 = (int64_t)p.B * p.H * (p.V / 32);
    const int64_t w32 = (b32 + sms - 1) / sms, w16 = (2 * b32 + sms - 1) / sms;
    vb = w16 > w32 ? 32 : 16;
  }
  if (const char* e = std::getenv("ENGRAM_GDR_VB")) {
    const int want = std::atoi(e);
    TORCH_CHECK(want == 16 || (want == 32 && p.V % 32 == 0), "ENGRAM_GDR_VB=", e, " is not usable with V=", p.V);
    vb = want;
  }
  return vb;
}

}  // namespace gdr
}  // namespace engram
