// The forward fused: prep's work and the sequential scan in one kernel, so u and w are never
// formed in memory and A and Aqk never leave shared memory unless the backward needs them (the
// split kernels write w, u and Aqk and read them back: about 0.74 GB at (8,2048,16,128), against
// 0.27 GB for q, k, v and o alone).
//
// One block per (batch, head, 128 columns of V): warpgroup 0 is the producer, warpgroups 1 and
// 2 the consumers (64 columns each). Per chunk the producer
//   - requests the next chunk's q, k and the block's v columns (TMA, 128-byte swizzled boxes),
//   - forms K K^T and Q K^T (wgmma, both operands in shared memory; without a gradient as one
//     product K [K; Q]^T), L = strict-lower(beta_i e^{G_i - G_j} K K^T) in fp32 and
//     A = (I + L)^-1 (the diagonal blocks in fp32, the rest on tensor cores in tf32:
//     invert_in_halvings), with G (the chunk-local cumulative log decay) scanned one chunk
//     ahead by warp 1,
//   - writes A diag(beta) and Aqk = tril(Q K^T * e^{G_i - G_j}) as 16-bit tiles,
// and hands the chunk to the consumers, which run the split scan's chunk step with X formed from
// v (fwd_chunk_wg<FromV>: X = A diag(beta) (V - e^G K S) = u - w S) while the producer forms
// the next one. A consumer group reads v's values as transposed 8 x 8 blocks (ldmatrix.trans),
// writes O over its slab of v's tile (stmatrix.trans) and stores it with one TMA request per
// chunk: one 2-byte read per value and 16 scattered 4-byte stores per thread had taken about
// half of its chunk step (clock64 stamps), and the group now waits for the producer instead.
// The producer gives up registers to the consumers (setmaxnreg): it holds at most two 64 x 64
// accumulators, they hold the state.
//
// With Save (a training forward) it also writes what the backward reads: G, A (rounded to T),
// Aqk and w = (A diag(beta e^G)) K per chunk, and the consumers store h and X.
//
// Rounding differs from the split path: there u and w are rounded to T and X = u - w S; here
// D = V - e^G K S is rounded to T before A diag(beta) (rounded once) multiplies it. Both are
// within the bf16/fp16 tolerances of gdr_check.
//
// Rings: 3 input slots (q, k, v) and 2 output slots (A diag(beta), Aqk, G and its decays). While the consumers
// work on chunk n - 1, the producer forms chunk n and chunk n + 1's tiles are in flight; the
// producer reuses chunk n - 2's slots once the consumers have signalled they are past it.
#include <c10/util/Exception.h>
#include "gdr.h"
#include "gdr_common.cuh"
#include "gdr_mma.cuh"
#include "gdr_scan_wg.cuh"
#include "gdr_tma.cuh"
#include "gdr_wgmma.cuh"

namespace engram {
namespace gdr {
namespace {

constexpr int kNWG = 2;             // consumer warpgroups (64 columns of V each)
constexpr int kLDL = kC + 4;        // L's row stride (floats): conflict-free row-wise writes
// setmaxnreg: producer x 128 + consumer x 256 <= 384 x 168, the launch's budget at one block per
// SM. Without Save the producer's chain bounds the kernel, so it gets the registers the
// consumers can spare: at (8,2048,16,128) the kernel takes 0.174 ms at 120 / 192, 0.166 at
// 128 / 184, 0.152 at 136 / 176, 0.147-0.148 at 144 / 176 and 152 / 176, 0.159 at 168 / 168
// (same call, torch.profiler). With Save the consumers also store h and X, and 152 / 176 made
// that forward slower (0.259-0.261 against 0.247-0.249 ms), so it keeps 120 / 192. ptxas
// reports 52-56 spilled bytes at K = 128 without Save (at 120 / 192 as at 152 / 176), none with.
template <bool Save>
struct FusedRegs {
  static constexpr int producer = Save ? 120 : 152, consumer = Save ? 192 : 176;
  static_assert(128 * producer + 256 * consumer <= 384 * 168, "the launch's register budget");
};

template <int K, bool Wide = false>
struct FusedLayout {
  static constexpr int VC = 64 * kNWG, kIn = 3, kOut = 2;
  static_assert(kIn == kOut + 1, "chunk n + 1's input reuses chunk n - kOut's slot, freed with its output");
  // input slot: q and k [C x K], then the block's columns of v [C x VC]. Wide (the forward
  // without a gradient, whose producer forms K [K; Q]^T): k's and q's 64-column slabs
  // interleaved (k's slab s, then q's), so that K's 64 rows and Q's form one 128-row operand;
  // else q's slabs, then k's. slab: their stride in bytes (qk_rows: in 128-byte rows).
  static constexpr int slab = (Wide ? 2 : 1) * kC * 128, qk_rows = slab / 128;
  static constexpr int q = Wide ? kC * 128 : 0, k = Wide ? 0 : 2 * kC * K, v = 4 * kC * K, in_bytes = v + 2 * kC * VC;
  // output slot: A diag(beta) [C x C], Aqk [C x C], G, e^G, e^{G_last - G} [C] fp32
  static constexpr int ab = 0, a = ab + 2 * kC * kC, g = a + 2 * kC * kC, eg = g + 4 * kC, egl = eg + 4 * kC,
                       out_bytes = (egl + 4 * kC + 1023) / 1024 * 1024;
  // shared by all chunks: the inverse's fp32 A [C x C] (with Save, w [C x K] is staged there once
  // A's fragments are read), L [C x kLDL] fp32, beta e^G [C] fp32, two chunks' tables of G log2(e),
  // beta and G [3 x C] fp32 (produce's scan_into), the barriers
  static_assert(2 * kC * K <= 4 * kC * kC, "w's staging fits in A's place");
  static constexpr int ins = 0, outs = ins + kIn * in_bytes, af = outs + kOut * out_bytes, lmat = af + 4 * kC * kC,
                       vec = lmat + 4 * kC * kLDL, gt = vec + 4 * kC, bars = gt + 4 * 6 * kC,
                       bytes = bars + 8 * (kIn + 2 * kOut);
};

struct FusedMaps {
  CUtensorMap q, k, v, o;
};

// The inverse's fp32 A: row-major, stride 64, each row's column quads XORed with the
// row's index mod 8 (fragment reads of 8 rows at one column then spread over the banks).
__device__ __forceinline__ int a_at(int i, int j) { return i * kC + (j ^ ((i & 7) << 2)); }

constexpr float kLog2e = 1.4426950408889634f;
// 2^x (ex2.approx.ftz: results below 2^-126 flush to zero; the decays it forms are <= 1)
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ void producer_sync() { asm volatile("bar.sync 1, 128;\n" ::: "memory"); }

// The inverse's products on the tensor cores in tf32 (m16n8k8, operands rounded to nearest: 10
// bits of mantissa, fp32's range). A is rounded to T for the consumers afterwards, so tf32's
// rounding adds little to its error (gdr_check's errors are the same to two digits); the bf16
// hi + lo split it replaces took three mma and the operand splits per term, and the producer's
// instruction stream bounds the kernel: the two halvings took 1,832 cycles a chunk with the
// split, 1,318 in tf32 (clock64 stamps, (8,2048,16,128)).
// A k8 step's slots are permuted: slot t holds column (row of B) 2 t, slot t + 4 column 2 t + 1,
// so that an accumulator's (2 t, 2 t + 1) pair is an A fragment as it stands and fp32 operands
// come from shared memory as float2.
__device__ __forceinline__ uint32_t tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}
__device__ __forceinline__ void mma1688_tf32(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// The two k8 A fragments of rows r0.., columns c0 .. c0 + 15 of an fp32 matrix at(i, j).
template <class At>
__device__ __forceinline__ void a_tf32(uint32_t a[2][4], At at, int r0, int c0) {
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
#pragma unroll
  for (int s = 0; s < 2; ++s) {
    const float2 x0 = *reinterpret_cast<const float2*>(at(r0 + g, c0 + 8 * s + 2 * t));
    const float2 x1 = *reinterpret_cast<const float2*>(at(r0 + g + 8, c0 + 8 * s + 2 * t));
    a[s][0] = tf32(x0.x), a[s][1] = tf32(x1.x), a[s][2] = tf32(x0.y), a[s][3] = tf32(x1.y);
  }
}
// The same fragments from two accumulators (columns 0-7 and 8-15 of a 16 x 16 product).
__device__ __forceinline__ void acc_to_a_tf32(uint32_t a[2][4], const float c0[4], const float c1[4]) {
  a[0][0] = tf32(c0[0]), a[0][1] = tf32(c0[2]), a[0][2] = tf32(c0[1]), a[0][3] = tf32(c0[3]);
  a[1][0] = tf32(c1[0]), a[1][1] = tf32(c1[2]), a[1][2] = tf32(c1[1]), a[1][3] = tf32(c1[3]);
}
// acc += X Y with X's fragments and Y's k16 x n8 block at rows k0, columns n0 of an fp32 matrix at(k, n).
template <class At>
__device__ __forceinline__ void mma_tf32(float acc[4], const uint32_t x[2][4], At at, int k0, int n0) {
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
#pragma unroll
  for (int s = 0; s < 2; ++s)
    mma1688_tf32(acc, x[s], tf32(*at(k0 + 8 * s + 2 * t, n0 + g)), tf32(*at(k0 + 8 * s + 2 * t + 1, n0 + g)));
}

// A = (I + L)^-1 by the producer's 128 threads (L with stride kLDL, A at a_at): the diagonal
// 16 x 16 blocks by forward substitution in fp32, then two halvings on the tensor cores, each
// block as -A_ii (L_ij A_jj) with the bracket's left factor formed first:
//   1. blocks (1,0) and (3,2): warps 2p and 2p + 1 both form T = A_{b+1,b+1} L_{b+1,b} (b = 2p; Tb below)
//      and each one n8 half of -T A_bb;
//   2. the lower-left quarter: warp w forms the strip T = A_{H1,H1} L_{H1,H0} of its block row
//      bi = 2 + w / 2 (both warps of a row: no exchange) and block (bi, w % 2) = -T A_{H0,H0}.
// Three barriers, and the products' operands are read from shared memory once (the fp32 sums
// read each one 16 times and were bound by shared-memory bandwidth).
// Each block of A is also written as T, times beta by column (beta: the chunk's table), into the
// swizzled tile ab (whose blocks above the diagonal the caller zeroed once), so the consumers'
// operand needs no pass of its own.
// A's blocks above the diagonal are zeroed only with Save: the halvings never read them, and
// without Save nothing else writes A's place (with Save w is staged there).
// Warp 1 has the smallest share of halving 2 (one strip product and one output block, warp 2
// two and two); it calls slack() before the last barrier.
template <class T, bool Save, class Slack>
__device__ __forceinline__ void invert_in_halvings(const float* L, float* A, unsigned char* ab, const float* beta, int tid,
                                                   Slack slack) {
  const int warp = tid >> 5, l = tid & 31, g = l >> 2, t = l & 3;
  auto Lat = [&](int i, int j) { return L + i * kLDL + j; };
  auto Aat = [&](int i, int j) { return A + a_at(i, j); };
  // stores -acc (rows r0 + g, + 8; columns c0 + 2t, + 1) into A and, scaled, into ab
  auto store_neg = [&](const float acc[4], int r0, int c0) {
    const int c = c0 + 2 * t;
    const float b0 = -beta[c], b1 = -beta[c + 1];
    *reinterpret_cast<float2*>(Aat(r0 + g, c)) = make_float2(-acc[0], -acc[1]);
    *reinterpret_cast<float2*>(Aat(r0 + g + 8, c)) = make_float2(-acc[2], -acc[3]);
    *reinterpret_cast<uint32_t*>(ab + wg::sw128_offset(r0 + g, c, kC)) = mma::pack<T>(acc[0] * b0, acc[1] * b1);
    *reinterpret_cast<uint32_t*>(ab + wg::sw128_offset(r0 + g + 8, c, kC)) = mma::pack<T>(acc[2] * b0, acc[3] * b1);
  };
  if constexpr (Save) zero_upper_blocks(A, [](int i, int j) { return a_at(i, j); }, tid, 128);
  invert_diagonal_blocks(L, kLDL, A, [](int i, int j) { return a_at(i, j); }, tid);
  producer_sync();
  {  // the diagonal blocks into ab: warp w block w, a lane 8 entries of a row
    const int i = 16 * warp + (l >> 1), c = 16 * warp + 8 * (l & 1);
    const float4 x0 = *reinterpret_cast<const float4*>(Aat(i, c)), x1 = *reinterpret_cast<const float4*>(Aat(i, c + 4));
    const float4 b0 = *reinterpret_cast<const float4*>(beta + c), b1 = *reinterpret_cast<const float4*>(beta + c + 4);
    *reinterpret_cast<uint4*>(ab + wg::sw128_offset(i, c, kC)) =
        make_uint4(mma::pack<T>(x0.x * b0.x, x0.y * b0.y), mma::pack<T>(x0.z * b0.z, x0.w * b0.w),
                   mma::pack<T>(x1.x * b1.x, x1.y * b1.y), mma::pack<T>(x1.z * b1.z, x1.w * b1.w));
  }
  uint32_t xa[2][4];
  {
    const int b = 2 * (warp >> 1), h = warp & 1;
    float Tb[2][4] = {};
    a_tf32(xa, Aat, 16 * (b + 1), 16 * (b + 1));
#pragma unroll
    for (int j = 0; j < 2; ++j) mma_tf32(Tb[j], xa, Lat, 16 * (b + 1), 16 * b + 8 * j);
    acc_to_a_tf32(xa, Tb[0], Tb[1]);
    float O[4] = {};
    mma_tf32(O, xa, Aat, 16 * b, 16 * b + 8 * h);
    store_neg(O, 16 * (b + 1), 16 * b + 8 * h);
  }
  producer_sync();
  {
    const int bi = 2 + (warp >> 1), bj = warp & 1;
    float Tb[4][4] = {};
    for (int m = 2; m <= bi; ++m) {
      a_tf32(xa, Aat, 16 * bi, 16 * m);
#pragma unroll
      for (int j = 0; j < 4; ++j) mma_tf32(Tb[j], xa, Lat, 16 * m, 8 * j);
    }
    float O[2][4] = {};
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      if (s < bj) continue;  // A_{0,1} = 0
      acc_to_a_tf32(xa, Tb[2 * s], Tb[2 * s + 1]);
#pragma unroll
      for (int j = 0; j < 2; ++j) mma_tf32(O[j], xa, Aat, 16 * s, 16 * bj + 8 * j);
    }
#pragma unroll
    for (int j = 0; j < 2; ++j) store_neg(O[j], 16 * bi, 16 * bj + 8 * j);
  }
  if (warp == 1) slack();
  producer_sync();
}

template <int R>
__device__ __forceinline__ void regs_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R>
__device__ __forceinline__ void regs_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}

// Stores f(i, j, acc) (a 64 x 64 accumulator of the calling warpgroup: rows i, columns j) as T
// into columns c0 + j of a swizzled C-row tile, in 4-byte pairs (conflict-free: the swizzle
// spreads a warp's 8 rows over distinct 16-byte chunks).
template <class T, class F>
__device__ __forceinline__ void store_swizzled(unsigned char* tile, int c0, const float* acc, F f) {
  const int warp = (threadIdx.x >> 5) & 3, l = threadIdx.x & 31, g = l >> 2, t = l & 3;
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int i = 16 * warp + g + 8 * h, c = 8 * j + 2 * t;
      *reinterpret_cast<uint32_t*>(tile + wg::sw128_offset(i, c0 + c, kC)) =
          mma::pack<T>(f(i, c, acc[4 * j + 2 * h]), f(i, c + 1, acc[4 * j + 2 * h + 1]));
    }
}

// Where a block works and its rings (shared by the producer and the consumers).
template <int K>
struct FusedBlock {
  using L = FusedLayout<K>;
  // the rings serve both layouts: only q's and k's places inside an input slot differ
  static_assert(FusedLayout<K, true>::in_bytes == L::in_bytes && FusedLayout<K, true>::bars == L::bars &&
                    FusedLayout<K, true>::bytes == L::bytes,
                "the slots and barriers do not depend on Wide");
  unsigned char* sm;
  uint64_t *full, *ready, *done;  // input landed (TMA); output formed (producer); chunk consumed
  int64_t bh;
  int v0, hh, b;
  __device__ FusedBlock(const Params& p, unsigned char* raw)
      : sm(raw + ((1024 - (tma::smem_addr(raw) & 1023)) & 1023)),
        full(reinterpret_cast<uint64_t*>(sm + L::bars)),
        ready(full + L::kIn),
        done(ready + L::kOut) {
    const int nvb = p.V / L::VC;
    bh = blockIdx.x / nvb;
    v0 = (int)(blockIdx.x % nvb) * L::VC;
    hh = (int)(bh % p.H);
    b = (int)(bh / p.H);
  }
  __device__ unsigned char* in(int n) const { return sm + L::ins + (n % L::kIn) * L::in_bytes; }
  __device__ unsigned char* out(int n) const { return sm + L::outs + (n % L::kOut) * L::out_bytes; }
};

// Copies a swizzled C-row tile of `cols` 16-bit columns to dst [C x cols] in 16-byte row chunks.
__device__ __forceinline__ void copy_tile_out(const unsigned char* tile, void* dst, int cols) {
  const int tid = threadIdx.x & 127, per_row = cols / 8;
  for (int e = tid; e < kC * per_row; e += 128) {
    const int i = e / per_row, c = (e % per_row) * 8;
    *reinterpret_cast<uint4*>(static_cast<unsigned char*>(dst) + ((int64_t)i * cols + c) * 2) =
        *reinterpret_cast<const uint4*>(tile + wg::sw128_offset(i, c, kC));
  }
}

// With Save, what the backward reads besides G and A: w = (A diag(beta e^G)) K, formed with A's
// scaled columns as the A fragments of the warp's 16 rows and staged over A, and Aqk.
template <class T, int K>
__device__ __forceinline__ void save_w_and_aqk(const Params& p, const FusedBlock<K>& fb, const unsigned char* in,
                                               const unsigned char* out, int64_t cidx) {
  using L = FusedLayout<K>;
  const int warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  float* Af = reinterpret_cast<float*>(fb.sm + L::af);
  const float* sc = reinterpret_cast<const float*>(fb.sm + L::vec);
  uint32_t F[kC / 16][4];
  const int r = 16 * warp + g;
#pragma unroll
  for (int s = 0; s < kC / 16; ++s) {
    const int c = 16 * s + 2 * t;
    const float2 x00 = *reinterpret_cast<const float2*>(Af + a_at(r, c));
    const float2 x10 = *reinterpret_cast<const float2*>(Af + a_at(r + 8, c));
    const float2 x01 = *reinterpret_cast<const float2*>(Af + a_at(r, c + 8));
    const float2 x11 = *reinterpret_cast<const float2*>(Af + a_at(r + 8, c + 8));
    F[s][0] = mma::pack<T>(x00.x * sc[c], x00.y * sc[c + 1]);
    F[s][1] = mma::pack<T>(x10.x * sc[c], x10.y * sc[c + 1]);
    F[s][2] = mma::pack<T>(x01.x * sc[c + 8], x01.y * sc[c + 9]);
    F[s][3] = mma::pack<T>(x11.x * sc[c + 8], x11.y * sc[c + 9]);
  }
  producer_sync();  // A is read: w's staging may overwrite it
  unsigned char* wst = fb.sm + L::af;
  float acc[32];
#pragma unroll
  for (int h = 0; h < K / 64; ++h) {
    wg::pin<4 * kC / 16>(&F[0][0]);
    wg::fence();
#pragma unroll
    for (int s = 0; s < kC / 16; ++s) wg::RS<64, T>::template mma<1>(acc, F[s], wg::desc_mnmajor(in + L::k + h * L::slab, L::qk_rows, s), s);
    wg::commit();
    wg::wait<0>();
    wg::pin<32>(acc);
    wg::pin<4 * kC / 16>(&F[0][0]);
    store_swizzled<T>(wst, 64 * h, acc, [](int, int, float x) { return x; });
  }
  producer_sync();  // w is staged
  copy_tile_out(wst, static_cast<T*>(p.w) + cidx * kC * K, K);
  copy_tile_out(out + L::a, static_cast<T*>(p.Aqk) + cidx * kC * kC, kC);
}

template <class T, int K, bool Save>
__device__ __forceinline__ void produce(const Params& p, const FusedMaps& m, const FusedBlock<K>& fb) {
  using L = FusedLayout<K, !Save>;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int NT = p.NT, b = fb.b, hh = fb.hh;
  float* Ls = reinterpret_cast<float*>(fb.sm + L::lmat);
  float* Af = reinterpret_cast<float*>(fb.sm + L::af);
  float* bgS = reinterpret_cast<float*>(fb.sm + L::vec);
  auto fetch = [&](int n) {
    unsigned char* s = fb.in(n);
    uint64_t* bar = &fb.full[n % L::kIn];
    tma::arrive_expect(bar, L::in_bytes);
    if constexpr (Save) {  // the maps' boxes hold all of q's (k's) slabs
      tma::load<5>(s + L::q, &m.q, {0, n * kC, 0, hh, b}, bar);
      tma::load<5>(s + L::k, &m.k, {0, n * kC, 0, hh, b}, bar);
    } else {  // one slab per box, interleaved
#pragma unroll
      for (int sl = 0; sl < K / 64; ++sl) {
        tma::load<5>(s + L::k + sl * L::slab, &m.k, {0, n * kC, sl, hh, b}, bar);
        tma::load<5>(s + L::q + sl * L::slab, &m.q, {0, n * kC, sl, hh, b}, bar);
      }
    }
    tma::load<5>(s + L::v, &m.v, {0, n * kC, fb.v0 / 64, hh, b}, bar);
  };
  // chunk n's g and beta, rows 2 lane and 2 lane + 1 (rows past T: no decay, no write)
  float gn[2] = {0.f, 0.f}, bn[2] = {0.f, 0.f};
  auto load_gb = [&](int n) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int tt = n * kC + 2 * lane + e;
      const bool ok = tt < p.T;
      const int64_t row = ((int64_t)b * p.T + tt) * p.H + hh;
      gn[e] = ok ? p.g[row] : 0.f;
      bn[e] = ok ? p.beta[row] : 0.f;
    }
  };
  // chunk n's table: G log2(e), beta and G by row. Warp 1 scans chunk n + 1 into it while it
  // waits for the other warps in chunk n's last halving (the scan's shuffles and stores had
  // taken about 600 of the producer's 6,600 cycles a chunk at its head, clock64 stamps).
  auto table = [&](int n) { return reinterpret_cast<float*>(fb.sm + L::gt) + (n & 1) * 3 * kC; };
  auto scan_into = [&](int n) {  // inclusive scan of chunk n's 64 log decays (in gn), two a lane
    const float g0 = gn[0], g1 = gn[1];
    const float s2 = g0 + g1;
    float x = s2;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float y = __shfl_up_sync(0xffffffffu, x, o);
      if (lane >= o) x += y;
    }
    const float G0 = x - s2 + g0, G1 = x;
    float* tb = table(n);
    *reinterpret_cast<float2*>(tb + 2 * lane) = make_float2(G0 * kLog2e, G1 * kLog2e);
    *reinterpret_cast<float2*>(tb + kC + 2 * lane) = make_float2(bn[0], bn[1]);
    *reinterpret_cast<float2*>(tb + 2 * kC + 2 * lane) = make_float2(G0, G1);
  };
  if (warp == 1) {
    load_gb(0);
    scan_into(0);
  }
  if (tid == 0) fetch(0);
  // the blocks of A diag(beta) above the diagonal are zero in every output slot; the inverse
  // writes the others for each chunk
  for (int e = tid; e < L::kOut * 6 * 32; e += 128) {  // slots x blocks x 16-byte pieces
    const int slot = e / 192, blk = (e / 32) % 6, r = (e >> 1) & 15, c = 8 * (e & 1);
    const int bi = blk < 3 ? 0 : blk < 5 ? 1 : 2, bj = blk < 3 ? blk + 1 : blk < 5 ? blk - 1 : 3;
    *reinterpret_cast<uint4*>(fb.out(slot) + L::ab + wg::sw128_offset(16 * bi + r, 16 * bj + c, kC)) = make_uint4(0, 0, 0, 0);
  }
  producer_sync();  // chunk 0's table
  for (int n = 0; n < NT; ++n) {
    unsigned char* in = fb.in(n);
    unsigned char* out = fb.out(n);
    float* gS = reinterpret_cast<float*>(out + L::g);
    const int64_t cidx = fb.bh * NT + n;  // the chunk's index in the saved per-chunk tensors
    // chunk n - kOut's slots (chunk n + 1's input, chunk n's output) are free once the consumers are past it
    if (n >= L::kOut) tma::wait(&fb.done[n % L::kOut], ((n - L::kOut) / L::kOut) & 1);
    if (tid == 0 && n + 1 < NT) fetch(n + 1);
    const float* gW = table(n);  // G log2(e) by row
    const float* bW = gW + kC;   // beta by row
    if (warp == 1 && n + 1 < NT) load_gb(n + 1);  // scanned at the end of this chunk
    if (warp == 0) {  // for the consumers (G and its decays), and with Save for the backward and w's fragments
      const float2 G = *reinterpret_cast<const float2*>(gW + 2 * kC + 2 * lane);
      const float G0 = G.x, G1 = G.y, Gl = gW[3 * kC - 1];
      gS[2 * lane] = G0, gS[2 * lane + 1] = G1;
      float* eS = gS + (L::eg - L::g) / 4;
      float* elS = gS + (L::egl - L::g) / 4;
      *reinterpret_cast<float2*>(eS + 2 * lane) = make_float2(__expf(G0), __expf(G1));
      *reinterpret_cast<float2*>(elS + 2 * lane) = make_float2(__expf(Gl - G0), __expf(Gl - G1));
      if constexpr (Save) {
        *reinterpret_cast<float2*>(p.gc + cidx * kC + 2 * lane) = make_float2(G0, G1);
        bgS[2 * lane] = bW[2 * lane] * __expf(G0), bgS[2 * lane + 1] = bW[2 * lane + 1] * __expf(G1);
      }
    }
    tma::wait(&fb.full[n % L::kIn], (n / L::kIn) & 1);

    // L = strict-lower(beta_i e^{G_i - G_j} K K^T) to shared memory in fp32, Aqk = tril(Q K^T
    // e^{G_i - G_j}) to its 16-bit tile; the masks are selects (no branches: the 16 elements of a
    // thread pipeline). Both ways are written out here: as inlined helper functions ptxas spilled
    // more (140 bytes with Save).
    float gc[16];  // G log2(e) at the thread's 16 columns c = 8 j + 2 t (+ 1), loaded while the products run
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float2 v = *reinterpret_cast<const float2*>(gW + 8 * j + 2 * t);
      gc[2 * j] = v.x, gc[2 * j + 1] = v.y;
    }
    if constexpr (!Save) {
      // K [K; Q]^T as one N = 128 chain (ptxas waits for each wgmma of this kernel, so half as
      // many waits as K K^T and Q K^T apart: 0.131-0.134 against 0.138-0.139 ms at
      // (8,2048,16,128)).
      // Columns j < 64 hold K K^T, columns 64 + i hold (Q K^T)^T, which stmatrix.trans writes
      // back transposed. An element (r, c) needs the decay of L (c < r) or of Aqk^T (c >= r),
      // never both: one exponential each, as before.
      float acc[64];
      wg::fence();
#pragma unroll
      for (int s = 0; s < K / 16; ++s)
        wg::SS<128, T>::template mma<0>(acc, wg::desc_kmajor(in + L::k, L::qk_rows, s), wg::desc_kmajor(in + L::k, L::qk_rows, s), s);
      wg::commit();
      wg::wait<0>();
      wg::pin<64>(acc);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = 16 * warp + g + 8 * h;
        const float br = bW[r], gr = gW[r];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const int c = 8 * j + 2 * t;
          // both exponents are <= 0 (G falls along the chunk)
          const float d0 = ex2(c < r ? gr - gc[2 * j] : gc[2 * j] - gr);
          const float d1 = ex2(c + 1 < r ? gr - gc[2 * j + 1] : gc[2 * j + 1] - gr);
          const float l0 = c < r ? br * d0 * acc[4 * j + 2 * h] : 0.f;
          const float l1 = c + 1 < r ? br * d1 * acc[4 * j + 2 * h + 1] : 0.f;
          *reinterpret_cast<float2*>(Ls + r * kLDL + c) = make_float2(l0, l1);
          float* a = acc + 32 + 4 * j + 2 * h;
          a[0] = c >= r ? d0 * a[0] : 0.f;
          a[1] = c + 1 >= r ? d1 * a[1] : 0.f;
        }
      }
      stage_t<T, 8>(out + L::a, reinterpret_cast<const float(*)[4]>(acc + 32), 1.f, 16 * warp);
    } else {
      // K K^T and Q K^T as two N = 64 chains: with the 120 registers Save leaves the producer,
      // the 64-float accumulator spilled (0.28 against 0.24 ms). One decay per element serves both.
      float acc[32], qk[32];
      wg::fence();
#pragma unroll
      for (int s = 0; s < K / 16; ++s)
        wg::SS<64, T>::template mma<0>(acc, wg::desc_kmajor(in + L::k, L::qk_rows, s), wg::desc_kmajor(in + L::k, L::qk_rows, s), s);
      wg::commit();
#pragma unroll
      for (int s = 0; s < K / 16; ++s)
        wg::SS<64, T>::template mma<0>(qk, wg::desc_kmajor(in + L::q, L::qk_rows, s), wg::desc_kmajor(in + L::k, L::qk_rows, s), s);
      wg::commit();
      wg::wait<0>();
      wg::pin<32>(acc);
      wg::pin<32>(qk);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int i = 16 * warp + g + 8 * h;
        const float bi = bW[i], gi = gW[i];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const int c = 8 * j + 2 * t;
          // above the diagonal the decay may overflow to +inf: the selects below drop it
          const float d0 = ex2(gi - gc[2 * j]), d1 = ex2(gi - gc[2 * j + 1]);
          const float l0 = c < i ? bi * d0 * acc[4 * j + 2 * h] : 0.f;
          const float l1 = c + 1 < i ? bi * d1 * acc[4 * j + 2 * h + 1] : 0.f;
          *reinterpret_cast<float2*>(Ls + i * kLDL + c) = make_float2(l0, l1);
          const float a0 = c <= i ? d0 * qk[4 * j + 2 * h] : 0.f, a1 = c + 1 <= i ? d1 * qk[4 * j + 2 * h + 1] : 0.f;
          *reinterpret_cast<uint32_t*>(out + L::a + wg::sw128_offset(i, c, kC)) = mma::pack<T>(a0, a1);
        }
      }
    }
    producer_sync();  // L is visible
    // A, and A diag(beta) for the consumers; warp 1 scans the next chunk's table meanwhile
    invert_in_halvings<T, Save>(Ls, Af, out + L::ab, bW, tid, [&] {
      if (n + 1 < NT) scan_into(n + 1);
    });
    if constexpr (Save) {  // A rounded to T for the backward, then w and Aqk
#pragma unroll
      for (int e = tid; e < kC * kC / 8; e += 128) {
        const int i = e >> 3, c = (e & 7) * 8;
        const float4 x0 = *reinterpret_cast<const float4*>(Af + a_at(i, c));
        const float4 x1 = *reinterpret_cast<const float4*>(Af + a_at(i, c + 4));
        *reinterpret_cast<uint4*>(static_cast<T*>(p.A16) + (cidx * kC + i) * kC + c) =
            make_uint4(mma::pack<T>(x0.x, x0.y), mma::pack<T>(x0.z, x0.w), mma::pack<T>(x1.x, x1.y), mma::pack<T>(x1.z, x1.w));
      }
      save_w_and_aqk<T, K>(p, fb, in, out, cidx);
    }
    wg::fence_smem();  // the consumers' wgmma reads what these threads wrote
    tma::arrive(&fb.ready[n % L::kOut]);
  }
}

// The consumer warpgroup's barrier (named barriers 2 and 3; the producer's is 1).
__device__ __forceinline__ void consumer_sync(int wg) { asm volatile("bar.sync %0, 128;\n" ::"r"(2 + wg) : "memory"); }

template <class T, int K, bool Save>
__device__ __forceinline__ void consume(const Params& p, const FusedMaps& m, const FusedBlock<K>& fb) {
  using L = FusedLayout<K, !Save>;
  const int vw = 16 * ((int)(threadIdx.x >> 5) - 4);  // the warp's first column inside the block
  const int wg = vw / 64;
  float S[K / 8][4];
  const int64_t st0 = fb.bh * K * p.V + fb.v0 + vw;
  mma::load_state<K / 8>(S, p.h0, st0, p.V);
  for (int n = 0; n < p.NT; ++n) {
    unsigned char* in = fb.in(n);
    const unsigned char* out = fb.out(n);
    tma::wait(&fb.full[n % L::kIn], (n / L::kIn) & 1);
    tma::wait(&fb.ready[n % L::kOut], (n / L::kOut) & 1);
    const FwdChunkTiles tl{in + L::q,
                           in + L::k,
                           nullptr,
                           out + L::a,
                           in + L::v,
                           reinterpret_cast<const float*>(out + L::g),
                           out + L::ab,
                           reinterpret_cast<const float*>(out + L::eg),
                           reinterpret_cast<const float*>(out + L::egl),
                           in + L::v};
    fwd_chunk_wg<T, K, true, L::qk_rows>(S, tl, p, Save, fb.bh * p.NT + n, fb.b, fb.hh, fb.v0, vw, n * kC, [] {});
    // O is in the group's slab of v's tile: one TMA store (rows past T are not written), whose
    // reads of the slab end before the slot is handed back for chunk n + kIn's input
    wg::fence_smem();
    consumer_sync(wg);
    if ((threadIdx.x & 127) == 0) {
      tma::store5(&m.o, {0, n * kC, fb.v0 / 64 + wg, fb.hh, fb.b}, in + L::v + wg * kC * 128);
      tma::store_wait_read();
    }
    tma::arrive(&fb.done[n % L::kOut]);
  }
  if (p.ht != nullptr) mma::store_state<K / 8>(p.ht, S, st0, p.V);  // null: no final state asked for
}

template <class T, int K, bool Save>
__global__ void __launch_bounds__(128 * (kNWG + 1), 1) fwd_fused(Params p, const __grid_constant__ FusedMaps m) {
  using L = FusedLayout<K>;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const FusedBlock<K> fb(p, smem_raw);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int i = 0; i < L::kIn; ++i) tma::bar_init(&fb.full[i], 1);
#pragma unroll
    for (int i = 0; i < L::kOut; ++i) {
      tma::bar_init(&fb.ready[i], 128);
      tma::bar_init(&fb.done[i], 128 * kNWG);
    }
    tma::fence_bar_init();
  }
  __syncthreads();
  if (threadIdx.x < 128) {
    regs_dec<FusedRegs<Save>::producer>();
    produce<T, K, Save>(p, m, fb);
  } else {
    regs_inc<FusedRegs<Save>::consumer>();
    consume<T, K, Save>(p, m, fb);
  }
}

template <class T, int K>
void run(const Params& p, cudaStream_t s) {
  FusedMaps m;
  const CUtensorMapDataType dt = tma::data_type<T>();
  const int qk_slabs = p.save ? p.K / 64 : 1;  // per box: see produce's fetch
  tma::encode_user(&m.q, dt, p.q, p.B, p.T, p.H, p.K, qk_slabs);
  tma::encode_user(&m.k, dt, p.k, p.B, p.T, p.H, p.K, qk_slabs);
  tma::encode_user(&m.v, dt, p.v, p.B, p.T, p.H, p.V, kNWG);
  tma::encode_user(&m.o, dt, p.o, p.B, p.T, p.H, p.V, 1);
  const int64_t blocks = (int64_t)p.B * p.H * (p.V / FusedLayout<K>::VC);
  if (p.save)
    launch_checked(fwd_fused<T, K, true>, blocks, 128 * (kNWG + 1), FusedLayout<K>::bytes + 1024, s, p, "gdr fused forward", m);
  else
    launch_checked(fwd_fused<T, K, false>, blocks, 128 * (kNWG + 1), FusedLayout<K>::bytes + 1024, s, p, "gdr fused forward", m);
}

// The shapes the kernel is built for: 16-bit inputs, K in {64, 128}, V in blocks of 64 kNWG columns.
bool fused_shape_fits(DType dt, const Params& p) {
  return dt != kF32 && (p.K == 64 || p.K == 128) && p.V % (64 * kNWG) == 0;
}

}  // namespace

bool fwd_fused_applies(DType dt, const Params& p) {
  if (!fused_shape_fits(dt, p)) return false;
  // a training forward saves A rounded to T, which is what the backward reads when its register
  // chunk stages run
  if (p.save && !chunk_mma_applies(dt, p)) return false;
  if (!scan_wg_applies(dt, p) || knob_says_smem("ENGRAM_GDR_PREP") || knob_is("ENGRAM_GDR_FUSED", "0")) return false;
  if (knob_is("ENGRAM_GDR_FUSED", "1")) return true;
  // One block per (batch, head, 128 columns) runs each head's chunks in sequence; with fewer
  // blocks than about 3/4 of the SMs the split kernels (prep parallel over every chunk) are as
  // fast or faster (H100: at 64 blocks within noise with and without a gradient, at 32 blocks
  // 0.67-0.70 against 0.46-0.47 ms forward at (2,8192,16,128); docs/benchmarks.md).
  return 4 * (int64_t)p.B * p.H * (p.V / (64 * kNWG)) >= 3 * (int64_t)device_attribute(cudaDevAttrMultiProcessorCount);
}

void launch_fwd_fused(DType dt, const Params& p, cudaStream_t s) {
  // the caller asked fwd_fused_applies (its knobs and device queries are not repeated here)
  TORCH_CHECK(fused_shape_fits(dt, p), "gdr fused forward: called where it does not apply (K=", p.K, ", V=", p.V, ")");
  if (dt == kBF16)
    p.K == 64 ? run<__nv_bfloat16, 64>(p, s) : run<__nv_bfloat16, 128>(p, s);
  else
    p.K == 64 ? run<__half, 64>(p, s) : run<__half, 128>(p, s);
}

}  // namespace gdr
}  // namespace engram
