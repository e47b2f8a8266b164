// CUDA fused log-softmax + label-smoothed cross-entropy. Forward: one row group per row computes the
// logsumexp and the row's loss in one online pass; a single block then averages the row losses in double in
// a fixed order (deterministic). Backward: one write pass per row from the saved logsumexp.
#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/nn_launch.h"
#include "core/ops/cuda/row_reduce.cuh"

namespace kolo::cuda {

namespace {

constexpr int kThreads = 256;

template <typename A>
struct CeState {
  MaxSum<A> ms;
  A zsum;
};

template <int TPR, typename T>
__global__ void ce_fwd_rows(const T* __restrict__ z, const int64_t* __restrict__ tg, int64_t rows, int64_t c,
                            double eps, int64_t ignore_index, Acc<T>* __restrict__ lse, double* row_loss,
                            int* row_valid, int* bad) {
  using A = Acc<T>;
  __shared__ MaxSum<A> sms[kThreads / 32];
  __shared__ A ssum[kThreads / 32];
  const int t = threadIdx.x % TPR;
  const int per_block = blockDim.x / TPR;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * per_block + threadIdx.x / TPR; row < rows;
       row += static_cast<int64_t>(gridDim.x) * per_block) {
    const T* zr = z + row * c;
    MaxSum<A> st{-INFINITY, A(0)};
    A zs = 0;
    for_row<TPR, T, A>(zr, c, t, [&](int64_t, A v) {
      zs += v;
      if (v == -INFINITY) return;
      if (v > st.m) {
        st.s = st.s * exp(st.m - v) + A(1);
        st.m = v;
      } else {
        st.s += exp(v - st.m);
      }
    });
    st = group_combine<TPR>(st, sms);
    zs = group_sum<TPR>(zs, ssum);
    if (t != 0) continue;
    const A l = st.m + ::log(st.s);
    lse[row] = l;
    const int64_t target = tg[row];
    const bool valid = target != ignore_index;
    if (valid && (target < 0 || target >= c)) {
      atomicAdd(bad, 1);
      row_valid[row] = 0;
      row_loss[row] = 0.0;
      continue;
    }
    row_valid[row] = valid ? 1 : 0;
    if (!valid) {
      row_loss[row] = 0.0;
      continue;
    }
    const double nll = static_cast<double>(l - convert<A>(zr[target]));
    const double smooth = static_cast<double>(l - zs / static_cast<A>(c));
    row_loss[row] = (1.0 - eps) * nll + eps * smooth;
  }
}

// One block: loss = sum(row_loss) / count (0/0 = NaN when every row is ignored, as the CPU kernel).
template <typename A>
__global__ void ce_fwd_mean(const double* row_loss, const int* row_valid, int64_t rows, A* loss) {
  __shared__ double ssum[kThreads / 32];
  __shared__ double scount[kThreads / 32];
  double s = 0, n = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    s += row_loss[r];
    n += row_valid[r];
  }
  s = group_sum<kThreads>(s, ssum);
  n = group_sum<kThreads>(n, scount);
  if (threadIdx.x == 0) *loss = static_cast<A>(s / n);
}

__global__ void ce_count(const int64_t* tg, int64_t rows, int64_t ignore_index, int* count) {
  __shared__ int s[kThreads / 32];
  int n = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) n += tg[r] != ignore_index;
  n = group_sum<kThreads>(n, s);
  if (threadIdx.x == 0) *count = n;
}

template <int TPR, typename T>
__global__ void ce_bwd_rows(const Acc<T>* __restrict__ grad_loss, const T* __restrict__ z, const int64_t* __restrict__ tg,
                            const Acc<T>* __restrict__ lse, int64_t rows, int64_t c, double eps,
                            int64_t ignore_index, const int* count, T* __restrict__ gz) {
  using A = Acc<T>;
  const int t = threadIdx.x % TPR;
  const int per_block = blockDim.x / TPR;
  const A g = *grad_loss / static_cast<A>(*count);
  const A on_target = static_cast<A>(1.0 - eps);
  const A uniform = static_cast<A>(eps / static_cast<double>(c));
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * per_block + threadIdx.x / TPR; row < rows;
       row += static_cast<int64_t>(gridDim.x) * per_block) {
    const int64_t target = tg[row];
    const T* zr = z + row * c;
    if (target == ignore_index) {
      write_row<TPR>(gz + row * c, c, t, [&](int64_t) { return A(0); });
      continue;
    }
    const A l = lse[row];
    write_row<TPR>(gz + row * c, c, t, [&](int64_t i) {
      return g * (exp(convert<A>(zr[i]) - l) - uniform - (i == target ? on_target : A(0)));
    });
  }
}

template <typename Launch>
void by_row_length(int64_t rows, int64_t n, Launch&& launch) {
  if (n <= 1024) launch(std::integral_constant<int, 32>{}, grid_for(rows * 32, kThreads));
  else launch(std::integral_constant<int, kThreads>{}, grid_for(rows * kThreads, kThreads));
}

}  // namespace

void launch_cross_entropy_fwd(DType t, const void* logits, const int64_t* targets, int64_t rows, int64_t c,
                              double smoothing, int64_t ignore_index, void* loss, void* lse, double* row_loss,
                              int* row_valid, int* bad, cudaStream_t stream) {
  dispatch_float_dtype(t, "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    if (rows > 0) {
      by_row_length(rows, c, [&](auto tpr, int grid) {
        ce_fwd_rows<decltype(tpr)::value, T><<<grid, kThreads, 0, stream>>>(
            static_cast<const T*>(logits), targets, rows, c, smoothing, ignore_index, static_cast<Acc<T>*>(lse),
            row_loss, row_valid, bad);
      });
      KOLO_CUDA_CHECK_LAUNCH();
    }
    ce_fwd_mean<<<1, kThreads, 0, stream>>>(row_loss, row_valid, rows, static_cast<Acc<T>*>(loss));
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_cross_entropy_bwd(DType t, const void* grad_loss, const void* logits, const int64_t* targets,
                              const void* lse, int64_t rows, int64_t c, double smoothing, int64_t ignore_index,
                              void* grad_logits, int* count, cudaStream_t stream) {
  if (rows == 0 || c == 0) return;
  ce_count<<<1, kThreads, 0, stream>>>(targets, rows, ignore_index, count);
  KOLO_CUDA_CHECK_LAUNCH();
  dispatch_float_dtype(t, "cross_entropy backward", [&](auto tag) {
    using T = decltype(tag);
    by_row_length(rows, c, [&](auto tpr, int grid) {
      ce_bwd_rows<decltype(tpr)::value, T><<<grid, kThreads, 0, stream>>>(
          static_cast<const Acc<T>*>(grad_loss), static_cast<const T*>(logits), targets,
          static_cast<const Acc<T>*>(lse), rows, c, smoothing, ignore_index, count, static_cast<T*>(grad_logits));
    });
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace kolo::cuda
