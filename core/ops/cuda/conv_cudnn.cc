// CUDA conv2d forward / backward-data / backward-weights through cuDNN 9's convolution API. The algorithm for
// each (direction, geometry, dtype, device) is chosen once by cudnnFind* (timed runs on cuDNN's own buffers,
// fastest successful one within the workspace limit) and cached for the process; bf16/f16 run on tensor
// cores with f32 accumulation, f32 stays in exact FMA math unless KOLO_ALLOW_TF32 is set (as GEMMs).
#include <algorithm>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/channel_launch.h"
#include "core/ops/cuda/cuda_tensor.h"
#include "core/ops/cuda/cudnn_common.h"
#include "core/ops/kernels/conv.h"
#include "core/util/env.h"

namespace kolo {
namespace {

constexpr size_t kMaxWorkspace = size_t{1} << 30;

class ConvDesc {
 public:
  ConvDesc(const ConvGeometry& g, DType t, const char* op) {
    KOLO_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d_));
    const cudnnDataType_t compute = t == DType::F64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    KOLO_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        d_, cuda::cudnn_dim(g.padding[0], op), cuda::cudnn_dim(g.padding[1], op), cuda::cudnn_dim(g.stride[0], op),
        cuda::cudnn_dim(g.stride[1], op), cuda::cudnn_dim(g.dilation[0], op), cuda::cudnn_dim(g.dilation[1], op),
        CUDNN_CROSS_CORRELATION, compute));
    KOLO_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d_, cuda::cudnn_dim(g.groups, op)));
    static const bool tf32 = env::get_bool("KOLO_ALLOW_TF32", false);
    const bool half = t == DType::BF16 || t == DType::F16;
    KOLO_CUDNN_CHECK(cudnnSetConvolutionMathType(d_, half || (t == DType::F32 && tf32) ? CUDNN_TENSOR_OP_MATH
                                                                                       : CUDNN_FMA_MATH));
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d_); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  cudnnConvolutionDescriptor_t get() const { return d_; }

 private:
  cudnnConvolutionDescriptor_t d_ = nullptr;
};

// The descriptors of one convolution call.
struct ConvDescs {
  cuda::TensorDesc x, y;
  cuda::FilterDesc w;
  ConvDesc conv;
  ConvDescs(const ConvGeometry& g, DType t, const char* op)
      : x(t, g.n, g.c, g.h, g.w, g.channels_last, op),
        y(t, g.n, g.o, g.oh, g.ow, g.channels_last, op),
        w(t, g.o, g.c / g.groups, g.kh, g.kw, g.channels_last, op),
        conv(g, t, op) {}
};

struct Choice {
  int algo = 0;
  size_t workspace = 0;
};

// Algorithm cache: key -> the successful algorithms within the workspace limit, fastest first. Process-wide
// like cuDNN's own handle state; filled once per shape. cuDNN times its candidates on its own buffers, and an
// algorithm it ranked can still refuse the real call (seen: CUDNN_STATUS_BAD_PARAM at batch 8), so a refusal
// drops that algorithm for the key and the call is retried with the next one.
class AlgoCache {
 public:
  template <typename Find>
  Choice get(const std::string& key, Find&& find) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end()) return it->second.front();
    }
    std::vector<Choice> ranked = find();
    std::lock_guard<std::mutex> lock(mu_);
    return map_.emplace(key, std::move(ranked)).first->second.front();
  }
  // Drops `algo` for `key`; false when no algorithm is left.
  bool drop(const std::string& key, int algo) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    auto& v = it->second;
    v.erase(std::remove_if(v.begin(), v.end(), [&](const Choice& c) { return c.algo == algo; }), v.end());
    if (!v.empty()) return true;
    map_.erase(it);
    return false;
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::vector<Choice>> map_;
};

AlgoCache& algo_cache() {
  static AlgoCache* cache = new AlgoCache;  // leaked: used until process exit
  return *cache;
}

// The successful results within the workspace limit, in cuDNN's order (fastest first).
template <typename Perf>
std::vector<Choice> rank(const Perf* perf, int count, const char* op, const std::string& key) {
  std::vector<Choice> out;
  for (int i = 0; i < count; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= kMaxWorkspace)
      out.push_back({static_cast<int>(perf[i].algo), perf[i].memory});
  KOLO_CHECK(!out.empty(), op, ": cuDNN has no algorithm for ", key);
  return out;
}

// Runs `launch(choice)` with the cached algorithm for `key`, moving down the ranking while cuDNN refuses the
// call for that algorithm; other failures throw at once.
template <typename Find, typename Launch>
void run_ranked(const char* op, const std::string& key, Find&& find, Launch&& launch) {
  for (;;) {
    const Choice c = algo_cache().get(key, find);
    const cudnnStatus_t st = launch(c);
    if (st == CUDNN_STATUS_SUCCESS) return;
    const bool refused = st == CUDNN_STATUS_BAD_PARAM || st == CUDNN_STATUS_NOT_SUPPORTED;
    KOLO_CHECK(refused && algo_cache().drop(key, c.algo), op, ": cuDNN error ", cudnnGetErrorString(st), " (",
               static_cast<int>(st), ") with algorithm ", c.algo, " for ", key);
  }
}

std::string cache_key(const char* dir, const ConvGeometry& g, DType t, int device) {
  return std::string(dir) + "|" + g.str() + "|" + dtype_name(t) + "|" + std::to_string(device);
}

void check_dtype(const char* op, const Tensor& a, const Tensor& b) {
  KOLO_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch ", a.describe(), " vs ", b.describe());
}

void cuda_conv2d_fwd(const ConvGeometry& g, const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y) {
  const char* op = "conv2d";
  cuda::KernelContext ctx(op, {&x, &weight, &y});
  check_dtype(op, x, weight);
  cudnnHandle_t h = cuda::cudnn_handle(ctx.device(), ctx.stream());
  ConvDescs d(g, x.dtype(), op);
  const std::string key = cache_key("fwd", g, x.dtype(), ctx.device());
  const cuda::CudnnScalars s(x.dtype());
  run_ranked(
      op, key,
      [&] {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        int n = 0;
        KOLO_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(h, d.x.get(), d.w.get(), d.conv.get(), d.y.get(),
                                                              CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
        return rank(perf, n, op, key);
      },
      [&](const Choice& c) {
        cuda::DeviceScratch ws(ctx.device(), std::max<size_t>(c.workspace, 16));
        return cudnnConvolutionForward(h, s.one(), d.x.get(), x.data_ptr(), d.w.get(), weight.data_ptr(),
                                       d.conv.get(), static_cast<cudnnConvolutionFwdAlgo_t>(c.algo), ws.get(),
                                       c.workspace, s.zero(), d.y.get(), y.data_ptr());
      });
  if (bias.defined()) {
    check_dtype(op, x, bias);
    cuda::TensorDesc bd(bias.dtype(), 1, g.o, 1, 1, false, op);
    KOLO_CUDNN_CHECK(cudnnAddTensor(h, s.one(), bd.get(), bias.data_ptr(), s.one(), d.y.get(), y.data_ptr()));
  }
}

void cuda_conv2d_bwd_data(const ConvGeometry& g, const Tensor& dy, const Tensor& weight, Tensor& dx,
                          bool accumulate) {
  const char* op = "conv2d backward (data)";
  cuda::KernelContext ctx(op, {&dy, &weight, &dx});
  check_dtype(op, dy, weight);
  cudnnHandle_t h = cuda::cudnn_handle(ctx.device(), ctx.stream());
  ConvDescs d(g, dy.dtype(), op);
  const std::string key = cache_key("bwd_data", g, dy.dtype(), ctx.device());
  const cuda::CudnnScalars s(dy.dtype());
  run_ranked(
      op, key,
      [&] {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        int n = 0;
        KOLO_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(
            h, d.w.get(), d.y.get(), d.conv.get(), d.x.get(), CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
        return rank(perf, n, op, key);
      },
      [&](const Choice& c) {
        cuda::DeviceScratch ws(ctx.device(), std::max<size_t>(c.workspace, 16));
        return cudnnConvolutionBackwardData(h, s.one(), d.w.get(), weight.data_ptr(), d.y.get(), dy.data_ptr(),
                                            d.conv.get(), static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo),
                                            ws.get(), c.workspace, accumulate ? s.one() : s.zero(), d.x.get(),
                                            dx.data_ptr());
      });
}

void cuda_conv2d_bwd_weights(const ConvGeometry& g, const Tensor& x, const Tensor& dy, Tensor& dweight,
                             Tensor& dbias) {
  const char* op = "conv2d backward (weights)";
  cuda::KernelContext ctx(op, {&x, &dy, &dweight});
  check_dtype(op, x, dy);
  cudnnHandle_t h = cuda::cudnn_handle(ctx.device(), ctx.stream());
  ConvDescs d(g, x.dtype(), op);
  const std::string key = cache_key("bwd_filter", g, x.dtype(), ctx.device());
  const cuda::CudnnScalars s(x.dtype());
  run_ranked(
      op, key,
      [&] {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        int n = 0;
        KOLO_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(
            h, d.x.get(), d.y.get(), d.conv.get(), d.w.get(), CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
        return rank(perf, n, op, key);
      },
      [&](const Choice& c) {
        cuda::DeviceScratch ws(ctx.device(), std::max<size_t>(c.workspace, 16));
        return cudnnConvolutionBackwardFilter(h, s.one(), d.x.get(), x.data_ptr(), d.y.get(), dy.data_ptr(),
                                              d.conv.get(), static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo),
                                              ws.get(), c.workspace, s.zero(), d.w.get(), dweight.data_ptr());
      });
  if (dbias.defined()) {
    // Bias gradient: per-channel sums of dy, accumulated in f32 (f64) and stored in the bias dtype.
    const cuda::ChannelView v = g.channels_last ? cuda::ChannelView{g.n * g.oh * g.ow, g.o, 1}
                                                : cuda::ChannelView{g.n, g.o, g.oh * g.ow};
    const size_t acc = dy.dtype() == DType::F64 ? sizeof(double) : sizeof(float);
    cuda::DeviceScratch sums(ctx.device(), std::max<size_t>(static_cast<size_t>(g.o) * acc, 16));
    cuda::launch_channel_sums(dy.dtype(), v, dy.data_ptr(), nullptr, nullptr, nullptr, sums.get(), nullptr,
                              ctx.stream());
    cuda::launch_channel_store(dbias.dtype(), sums.get(), g.o, dbias.data_ptr(), ctx.stream());
  }
}

}  // namespace

KOLO_REGISTER_KERNEL(conv2d_fwd, CUDA, cuda_conv2d_fwd);
KOLO_REGISTER_KERNEL(conv2d_bwd_data, CUDA, cuda_conv2d_bwd_data);
KOLO_REGISTER_KERNEL(conv2d_bwd_weights, CUDA, cuda_conv2d_bwd_weights);

}  // namespace kolo
