// CUDA conv2d forward / backward-data / backward-weights through cuDNN 9's convolution API. The algorithm for
// each (direction, geometry, dtype, device) is chosen once by cudnnFind* (timed runs on cuDNN's own buffers,
// fastest successful one within the workspace limit) and cached for the process; bf16/f16 run on tensor
// cores with f32 accumulation, f32 stays in exact FMA math unless KOLO_ALLOW_TF32 is set (as GEMMs).
//
// A pointwise convolution (1x1, stride 1, unpadded, ungrouped, channels-last) is a GEMM over the N*H*W pixel
// rows: y[M, O] = x[M, C] w[O, C]^T, dx = dy w, dw = dy^T x. For these shapes cuBLASLt's GEMM is one more
// candidate: at first use it is timed against cuDNN's first choice on the call's shapes and kept when faster
// (KOLO_CONV_GEMM=off turns the candidate off, =always skips the timing; KOLO_LOG_LEVEL=debug logs each decision).
#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/channel_launch.h"
#include "core/ops/cuda/cuda_tensor.h"
#include "core/ops/cuda/cudnn_common.h"
#include "core/ops/cuda/gemm_lt.h"
#include "core/ops/kernels/conv.h"
#include "core/util/env.h"
#include "core/util/logging.h"

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

constexpr int kGemmAlgo = -1;  // the cuBLASLt GEMM of a pointwise convolution

bool pointwise(const ConvGeometry& g) {
  return g.channels_last && g.kh == 1 && g.kw == 1 && g.stride[0] == 1 && g.stride[1] == 1 &&
         g.padding[0] == 0 && g.padding[1] == 0 && g.groups == 1;
}

// The operands of a pointwise convolution as the 3-D matrices gemm() takes.
Tensor pixels(const Tensor& t, int64_t channels) { return t.view({1, t.numel() / channels, channels}); }

// Mean device time of `launch` over a few runs after a warm-up, each run after the L2 cache is overwritten;
// infinity when it fails. In a network the operands arrive from DRAM: timed back to back, the 7x7 and 14x14
// layers' tensors (50-100 MB) stay partly in the H100's 50 MB L2 and favour whichever kernel reuses them most.
template <typename Launch>
float time_ms(int device, cudaStream_t stream, Launch&& launch) {
  constexpr int kRuns = 3;
  constexpr float kFailed = std::numeric_limits<float>::infinity();
  int l2 = 0;
  KOLO_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device));
  const size_t flush_bytes = 2 * static_cast<size_t>(std::max(l2, 1 << 20));
  cuda::DeviceScratch flush(device, flush_bytes);
  cudaEvent_t ev[2];
  KOLO_CUDA_CHECK(cudaEventCreate(&ev[0]));
  KOLO_CUDA_CHECK(cudaEventCreate(&ev[1]));
  const std::unique_ptr<cudaEvent_t, void (*)(cudaEvent_t*)> owned(ev, [](cudaEvent_t* e) {
    cudaEventDestroy(e[0]);
    cudaEventDestroy(e[1]);
  });
  if (launch() != CUDNN_STATUS_SUCCESS) return kFailed;
  float total = 0;
  for (int i = 0; i < kRuns; ++i) {
    KOLO_CUDA_CHECK(cudaMemsetAsync(flush.get(), i, flush_bytes, stream));
    KOLO_CUDA_CHECK(cudaEventRecord(ev[0], stream));
    if (launch() != CUDNN_STATUS_SUCCESS) return kFailed;
    KOLO_CUDA_CHECK(cudaEventRecord(ev[1], stream));
    KOLO_CUDA_CHECK(cudaEventSynchronize(ev[1]));
    float ms = 0;
    KOLO_CUDA_CHECK(cudaEventElapsedTime(&ms, ev[0], ev[1]));
    total += ms;
  }
  return total / kRuns;
}

// For a pointwise convolution, puts the GEMM ahead of cuDNN's ranking when it runs faster than cuDNN's first
// choice; `launch(choice)` runs one candidate into a scratch output. KOLO_CONV_GEMM (read at each shape's first
// use): auto (timed), always (no timing), off. Not timed while the stream is being captured (timing
// synchronises): the ranking stays cuDNN's.
template <typename Launch>
void offer_gemm(const char* op, const ConvGeometry& g, int device, cudaStream_t stream, std::vector<Choice>& ranked,
                Launch&& launch) {
  if (!pointwise(g)) return;
  const std::string mode = env::get("KOLO_CONV_GEMM").value_or("auto");
  KOLO_CHECK(mode == "auto" || mode == "always" || mode == "off", "KOLO_CONV_GEMM must be auto, always or off, got '",
             mode, "'");
  if (mode == "off") return;
  if (mode == "always") {
    ranked.insert(ranked.begin(), Choice{kGemmAlgo, 0});
    return;
  }
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  KOLO_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) return;
  const float cudnn_ms = time_ms(device, stream, [&] { return launch(ranked.front()); });
  const float gemm_ms = time_ms(device, stream, [&] { return launch(Choice{kGemmAlgo, 0}); });
  KOLO_LOG(Debug, op, " ", g.str(), ": cuDNN algorithm ", ranked.front().algo, " ", cudnn_ms, " ms, GEMM ", gemm_ms,
           " ms");
  if (gemm_ms < cudnn_ms) ranked.insert(ranked.begin(), Choice{kGemmAlgo, 0});
}

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
  auto launch = [&](const Choice& c, Tensor& out) {
    if (c.algo == kGemmAlgo) {
      Tensor out2 = pixels(out, g.o);
      cuda::gemm(pixels(x, g.c), weight.view({1, g.o, g.c}), out2, false, true, 1.0, 0.0);
      return CUDNN_STATUS_SUCCESS;
    }
    cuda::DeviceScratch ws(ctx.device(), std::max<size_t>(c.workspace, 16));
    return cudnnConvolutionForward(h, s.one(), d.x.get(), x.data_ptr(), d.w.get(), weight.data_ptr(), d.conv.get(),
                                   static_cast<cudnnConvolutionFwdAlgo_t>(c.algo), ws.get(), c.workspace, s.zero(),
                                   d.y.get(), out.data_ptr());
  };
  run_ranked(
      op, key,
      [&] {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        int n = 0;
        KOLO_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(h, d.x.get(), d.w.get(), d.conv.get(), d.y.get(),
                                                              CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
        std::vector<Choice> ranked = rank(perf, n, op, key);
        Tensor scratch = Tensor::empty(y.shape(), y.dtype(), y.device());
        offer_gemm(op, g, ctx.device(), ctx.stream(), ranked, [&](const Choice& c) { return launch(c, scratch); });
        return ranked;
      },
      [&](const Choice& c) { return launch(c, y); });
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
  const std::string key = cache_key(accumulate ? "bwd_data+" : "bwd_data", g, dy.dtype(), ctx.device());
  const cuda::CudnnScalars s(dy.dtype());
  auto launch = [&](const Choice& c, Tensor& out) {
    if (c.algo == kGemmAlgo) {
      Tensor out2 = pixels(out, g.c);
      cuda::gemm(pixels(dy, g.o), weight.view({1, g.o, g.c}), out2, false, false, 1.0, accumulate ? 1.0 : 0.0);
      return CUDNN_STATUS_SUCCESS;
    }
    cuda::DeviceScratch ws(ctx.device(), std::max<size_t>(c.workspace, 16));
    return cudnnConvolutionBackwardData(h, s.one(), d.w.get(), weight.data_ptr(), d.y.get(), dy.data_ptr(),
                                        d.conv.get(), static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo), ws.get(),
                                        c.workspace, accumulate ? s.one() : s.zero(), d.x.get(), out.data_ptr());
  };
  run_ranked(
      op, key,
      [&] {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        int n = 0;
        KOLO_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(
            h, d.w.get(), d.y.get(), d.conv.get(), d.x.get(), CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
        std::vector<Choice> ranked = rank(perf, n, op, key);
        // Timed into scratch (zeroed, as the sum's values do not change the time) so dx keeps what it holds.
        Tensor scratch = Tensor::zeros(dx.shape(), dx.dtype(), dx.device());
        offer_gemm(op, g, ctx.device(), ctx.stream(), ranked, [&](const Choice& c) { return launch(c, scratch); });
        return ranked;
      },
      [&](const Choice& c) { return launch(c, dx); });
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
  auto launch = [&](const Choice& c, Tensor& out) {
    if (c.algo == kGemmAlgo) {
      Tensor out2 = out.view({1, g.o, g.c});
      cuda::gemm(pixels(dy, g.o), pixels(x, g.c), out2, true, false, 1.0, 0.0);
      return CUDNN_STATUS_SUCCESS;
    }
    cuda::DeviceScratch ws(ctx.device(), std::max<size_t>(c.workspace, 16));
    return cudnnConvolutionBackwardFilter(h, s.one(), d.x.get(), x.data_ptr(), d.y.get(), dy.data_ptr(),
                                          d.conv.get(), static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo),
                                          ws.get(), c.workspace, s.zero(), d.w.get(), out.data_ptr());
  };
  run_ranked(
      op, key,
      [&] {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        int n = 0;
        KOLO_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(
            h, d.x.get(), d.y.get(), d.conv.get(), d.w.get(), CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
        std::vector<Choice> ranked = rank(perf, n, op, key);
        Tensor scratch = Tensor::empty(dweight.shape(), dweight.dtype(), dweight.device());
        offer_gemm(op, g, ctx.device(), ctx.stream(), ranked, [&](const Choice& c) { return launch(c, scratch); });
        return ranked;
      },
      [&](const Choice& c) { return launch(c, dweight); });
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
