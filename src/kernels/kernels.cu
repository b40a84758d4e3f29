// lawa's fused CUDA kernels. Built by build.rs (only with the `cuda` feature) with nvcc into a
// cubin for the target GPU (no driver JIT on first use) plus a PTX fallback for other GPUs.
// Each kernel has a CPU mirror in src/fused/*.rs that the tests compare against the unfused ops;
// the mirrors follow the same arithmetic order, so read them side by side.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#include <stdint.h>

using namespace nvcuda;

// dtype codes, shared with src/fused/cuda.rs (`code`).
#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2
#define DT_F64 3

// ---------------------------------------------------------------------------------------------
// Weighted sum of k tensors: out = sum_i w_i * x_i, f32 accumulation in input order, multiply
// then add with no contraction into FMA (__fmul_rn/__fadd_rn), one rounding to the output dtype.
// This is exactly what the CPU kernel (src/average/kernel.rs) does, so the results are bitwise
// equal. More than WSUM_MAX inputs are chained through an f32 accumulator (`acc_in`).

#define WSUM_MAX 8

struct WsumArgs {
    const void *x[WSUM_MAX];
    float w[WSUM_MAX];
    int dtype[WSUM_MAX];
    int k;
};

__device__ __forceinline__ float load_f32(const void *p, int dt, size_t i) {
    switch (dt) {
    case DT_F16:
        return __half2float(((const __half *)p)[i]);
    case DT_BF16:
        return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case DT_F64:
        return __double2float_rn(((const double *)p)[i]);
    default:
        return ((const float *)p)[i];
    }
}

// f32 -> bf16 bits, round to nearest even, NaN kept quiet: the CPU's f32_to_bf16_bits.
__device__ __forceinline__ unsigned short bf16_bits(float x) {
    unsigned int b = __float_as_uint(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((b >> 16) | 0x0040u);
    return (unsigned short)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

// Stores `acc` as element i of `out` in `dt`; returns whether the stored value is not finite.
__device__ __forceinline__ bool store_out(void *out, int dt, size_t i, float acc) {
    switch (dt) {
    case DT_F16: {
        __half h = __float2half_rn(acc);
        ((__half *)out)[i] = h;
        return (__half_as_ushort(h) & 0x7c00u) == 0x7c00u;
    }
    case DT_BF16: {
        unsigned short r = bf16_bits(acc);
        ((unsigned short *)out)[i] = r;
        return (r & 0x7f80u) == 0x7f80u;
    }
    case DT_F64:
        ((double *)out)[i] = (double)acc;
        return !isfinite(acc);
    default:
        ((float *)out)[i] = acc;
        return !isfinite(acc);
    }
}

extern "C" __global__ void lawa_weighted_sum(const WsumArgs a, const float *acc_in, void *out,
                                             int out_dt, unsigned long long n,
                                             unsigned int *nonfinite) {
    bool bad = false;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float acc;
        int j = 0;
        if (acc_in) {
            acc = acc_in[i];
        } else {
            acc = __fmul_rn(a.w[0], load_f32(a.x[0], a.dtype[0], i));
            j = 1;
        }
        for (; j < a.k; ++j) acc = __fadd_rn(acc, __fmul_rn(a.w[j], load_f32(a.x[j], a.dtype[j], i)));
        bad |= store_out(out, out_dt, i, acc);
    }
    if (__syncthreads_or(bad) && threadIdx.x == 0) atomicOr(nonfinite, 1u);
}

// ---------------------------------------------------------------------------------------------
// Per-row NLL over the vocabulary in one pass: nll[r] = logsumexp(row) - row[target[r]], read in
// the logits' own dtype (no f32 copy of [N, V]), one block per row, online max/sum per thread
// then a block reduction. A target outside the vocabulary gives NaN (the caller checks targets).

template <typename T> __device__ __forceinline__ float to_f32(T x);
template <> __device__ __forceinline__ float to_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f32<__half>(__half x) { return __half2float(x); }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 x) {
    return __bfloat162float(x);
}

// Merges the running (max, sum of exp(x - max)) pair (m, s) with (m2, s2).
__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2) {
    if (m2 == -INFINITY) return;
    if (m == -INFINITY) {
        m = m2;
        s = s2;
        return;
    }
    if (m2 > m) {
        s = s * expf(m - m2) + s2;
        m = m2;
    } else {
        s = s + s2 * expf(m2 - m);
    }
}

#define NLL_THREADS 256

template <typename T>
__device__ void token_nll(const T *logits, const unsigned int *targets, float *out,
                          unsigned int v) {
    const size_t row = blockIdx.x;
    const T *x = logits + row * (size_t)v;
    float m = -INFINITY, s = 0.f;
    for (unsigned int c = threadIdx.x; c < v; c += NLL_THREADS) {
        float xi = to_f32<T>(x[c]);
        if (xi > m) {
            s = (m == -INFINITY ? 0.f : s * expf(m - xi)) + 1.f;
            m = xi;
        } else {
            s += expf(xi - m);
        }
    }
    for (int off = 16; off > 0; off >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, off);
        float s2 = __shfl_xor_sync(0xffffffffu, s, off);
        lse_merge(m, s, m2, s2);
    }
    __shared__ float ms[NLL_THREADS / 32], ss[NLL_THREADS / 32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        ms[warp] = m;
        ss[warp] = s;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float M = ms[0], S = ss[0];
        for (int w = 1; w < NLL_THREADS / 32; ++w) lse_merge(M, S, ms[w], ss[w]);
        unsigned int t = targets[row];
        out[row] = t < v ? M + logf(S) - to_f32<T>(x[t]) : NAN;
    }
}

extern "C" __global__ void lawa_token_nll_f32(const float *l, const unsigned int *t, float *o,
                                              unsigned int v) {
    token_nll<float>(l, t, o, v);
}
extern "C" __global__ void lawa_token_nll_f16(const __half *l, const unsigned int *t, float *o,
                                              unsigned int v) {
    token_nll<__half>(l, t, o, v);
}
extern "C" __global__ void lawa_token_nll_bf16(const __nv_bfloat16 *l, const unsigned int *t,
                                               float *o, unsigned int v) {
    token_nll<__nv_bfloat16>(l, t, o, v);
}

// ---------------------------------------------------------------------------------------------
// Causal attention for inference, flash-attention style: out = softmax(q k^T * scale + causal) v
// for q, k, v, out: [B*H, T, HS] contiguous, f16 or bf16. A block of 4 warps takes BR = 64 query
// rows (16 per warp) and walks the key tiles of BC keys up to its last row, with an online
// softmax: no T x T matrix is ever stored. Q·K^T and P·V run on tensor cores (WMMA 16x16x16,
// f32 accumulate); the softmax statistics and the output accumulator are f32 in shared memory;
// P is rounded to the input dtype before P·V (as flash-attention does).

#define FA_BR 64
#define FA_WARPS 4

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

// Bytes of dynamic shared memory the kernel for (HS, BC) needs; src/fused/cuda.rs mirrors it.
__host__ __device__ constexpr size_t fa_smem(int hs, int bc, int tsize) {
    return (size_t)FA_BR * hs * tsize      // Q tile
           + 2 * (size_t)bc * hs * tsize   // K and V tiles
           + (size_t)FA_BR * bc * 4        // scores S (f32)
           + (size_t)FA_BR * bc * tsize    // probabilities P
           + (size_t)FA_BR * hs * 4        // output accumulator O (f32)
           + 3 * (size_t)FA_BR * 4;        // running max, running sum, rescale factor per row
}

// Copies rows [r0, r0 + rows) of a [T, HS] matrix into shared memory, zeros past row T.
// 16-byte vector copies: HS is a multiple of 16, so every row is a multiple of 32 bytes.
template <typename T, int HS>
__device__ __forceinline__ void load_tile(T *dst, const T *src, int r0, int rows, int t_len) {
    constexpr int VEC = 16 / sizeof(T);
    constexpr int PER_ROW = HS / VEC;
    for (int i = threadIdx.x; i < rows * PER_ROW; i += FA_WARPS * 32) {
        int r = i / PER_ROW, c = (i % PER_ROW) * VEC;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (r0 + r < t_len) val = *(const uint4 *)(src + (size_t)(r0 + r) * HS + c);
        *(uint4 *)(dst + r * HS + c) = val;
    }
}

template <typename T, int HS, int BC>
__device__ void flash_attn(const T *q, const T *k, const T *v, T *out, int t_len, float scale) {
    extern __shared__ __align__(128) unsigned char smem[];
    T *Qs = (T *)smem;
    T *Ks = Qs + FA_BR * HS;
    T *Vs = Ks + BC * HS;
    float *Ss = (float *)(Vs + BC * HS);
    T *Ps = (T *)(Ss + FA_BR * BC);
    float *Os = (float *)(Ps + FA_BR * BC);
    float *Ms = Os + FA_BR * HS;
    float *Ls = Ms + FA_BR;
    float *As = Ls + FA_BR;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int q0 = blockIdx.x * FA_BR;
    const size_t head = (size_t)blockIdx.y * t_len * HS;
    q += head;
    k += head;
    v += head;
    out += head;

    load_tile<T, HS>(Qs, q, q0, FA_BR, t_len);
    for (int i = threadIdx.x; i < FA_BR * HS; i += FA_WARPS * 32) Os[i] = 0.f;
    for (int i = threadIdx.x; i < FA_BR; i += FA_WARPS * 32) {
        Ms[i] = -INFINITY;
        Ls[i] = 0.f;
    }

    // This warp's 16 rows; each row's softmax is done by two lanes, each over half the columns.
    const int wr = warp * 16;
    const int r = lane / 2, half_ = lane % 2;
    const int row = q0 + wr + r;  // absolute query position
    const int last_row = min(q0 + FA_BR, t_len) - 1;
    const int n_tiles = last_row / BC + 1;

    for (int kt = 0; kt < n_tiles; ++kt) {
        const int k0 = kt * BC;
        __syncthreads();  // everyone is done with the previous K/V tiles
        load_tile<T, HS>(Ks, k, k0, BC, t_len);
        load_tile<T, HS>(Vs, v, k0, BC, t_len);
        __syncthreads();

        // S = Q K^T for this warp's rows.
        for (int j = 0; j < BC / 16; ++j) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
            wmma::fill_fragment(c, 0.f);
            for (int kk = 0; kk < HS / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
                wmma::load_matrix_sync(a, Qs + wr * HS + kk * 16, HS);
                wmma::load_matrix_sync(b, Ks + j * 16 * HS + kk * 16, HS);
                wmma::mma_sync(c, a, b, c);
            }
            wmma::store_matrix_sync(Ss + wr * BC + j * 16, c, BC, wmma::mem_row_major);
        }
        __syncwarp();

        // Online softmax over this tile's columns.
        const int lr = wr + r;  // row within the block
        const int c0 = half_ * (BC / 2);
        float mx = -INFINITY;
        for (int c = c0; c < c0 + BC / 2; ++c) {
            int key = k0 + c;
            if (key <= row && key < t_len) mx = fmaxf(mx, Ss[lr * BC + c] * scale);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        const float m_old = Ms[lr];
        const float m_new = fmaxf(m_old, mx);
        const float m_use = m_new == -INFINITY ? 0.f : m_new;
        float sum = 0.f;
        for (int c = c0; c < c0 + BC / 2; ++c) {
            int key = k0 + c;
            float p = (key <= row && key < t_len) ? expf(Ss[lr * BC + c] * scale - m_use) : 0.f;
            T pt = from_f32<T>(p);
            Ps[lr * BC + c] = pt;
            sum += to_f32<T>(pt);
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        const float alpha = m_old == -INFINITY ? 0.f : expf(m_old - m_use);
        __syncwarp();
        if (half_ == 0) {
            Ms[lr] = m_new;
            Ls[lr] = Ls[lr] * alpha + sum;
            As[lr] = alpha;
        }
        // Rescale this row's output accumulator.
        for (int c = half_ * (HS / 2); c < (half_ + 1) * (HS / 2); ++c) Os[lr * HS + c] *= alpha;
        __syncwarp();

        // O += P V.
        for (int j = 0; j < HS / 16; ++j) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> o;
            wmma::load_matrix_sync(o, Os + wr * HS + j * 16, HS, wmma::mem_row_major);
            for (int kk = 0; kk < BC / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
                wmma::load_matrix_sync(a, Ps + wr * BC + kk * 16, BC);
                wmma::load_matrix_sync(b, Vs + kk * 16 * HS + j * 16, HS);
                wmma::mma_sync(o, a, b, o);
            }
            wmma::store_matrix_sync(Os + wr * HS + j * 16, o, HS, wmma::mem_row_major);
        }
        __syncwarp();
    }

    // out = O / l, for the rows that exist.
    __syncthreads();
    for (int i = threadIdx.x; i < FA_BR * HS; i += FA_WARPS * 32) {
        int rr = i / HS, c = i % HS;
        if (q0 + rr < t_len) out[(size_t)(q0 + rr) * HS + c] = from_f32<T>(Os[i] / Ls[rr]);
    }
}

#define FA_KERNEL(NAME, T, HS, BC)                                                              \
    extern "C" __global__ void __launch_bounds__(FA_WARPS * 32)                                 \
        NAME(const T *q, const T *k, const T *v, T *o, int t_len, float scale) {                \
        flash_attn<T, HS, BC>(q, k, v, o, t_len, scale);                                         \
    }

// Key tile width per head size: 64 keys, or 32 for 256-wide heads to fit in shared memory.
FA_KERNEL(lawa_flash_attn_f16_64, __half, 64, 64)
FA_KERNEL(lawa_flash_attn_f16_80, __half, 80, 64)
FA_KERNEL(lawa_flash_attn_f16_128, __half, 128, 64)
FA_KERNEL(lawa_flash_attn_f16_256, __half, 256, 32)
FA_KERNEL(lawa_flash_attn_bf16_64, __nv_bfloat16, 64, 64)
FA_KERNEL(lawa_flash_attn_bf16_80, __nv_bfloat16, 80, 64)
FA_KERNEL(lawa_flash_attn_bf16_128, __nv_bfloat16, 128, 64)
FA_KERNEL(lawa_flash_attn_bf16_256, __nv_bfloat16, 256, 32)
