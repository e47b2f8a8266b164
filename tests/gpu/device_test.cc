// The CUDA device backend: discovery, errors, caching allocator (bins, stats, limit, stream-aware reuse),
// pinned memory, streams, events and copies.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "core/device/block_pool.h"
#include "core/device/cuda/cuda_check.h"
#include "tests/gpu/gpu_test_util.h"

namespace kolo {
namespace {

using testing::GpuTest;

TEST(CudaDiscovery, CountNeverThrowsAndMatchesAvailability) {
  const int n = cuda_device_count();
  EXPECT_GE(n, 0);
  EXPECT_EQ(device_available(DeviceType::CUDA), n > 0);
  if (n == 0) {
    EXPECT_TRUE(default_device().is_cpu());
    EXPECT_THROW(device_backend(DeviceType::CUDA), Error);
  } else {
    EXPECT_TRUE(default_device().is_cuda());
    EXPECT_EQ(device_backend(DeviceType::CUDA).device_count(), n);
    EXPECT_THROW(cuda_set_device(n), Error);
  }
}

TEST(CudaCheck, ErrorCarriesCallAndSite) {
  try {
    KOLO_CUDA_CHECK(cudaSetDevice(1 << 20));
    FAIL() << "expected kolo::Error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cudaSetDevice"), std::string::npos) << what;
    EXPECT_NE(what.find("device_test.cc:"), std::string::npos) << what;
  }
  EXPECT_THROW(KOLO_CUBLAS_CHECK(7), Error);
  EXPECT_THROW(KOLO_CUDNN_CHECK(3), Error);
}

TEST(CudaAllocatorLimit, ByteParsing) {
  using A = CudaCachingAllocator;
  EXPECT_EQ(A::parse_bytes("4096", "x"), 4096u);
  EXPECT_EQ(A::parse_bytes("512M", "x"), size_t{512} << 20);
  EXPECT_EQ(A::parse_bytes("16g", "x"), size_t{16} << 30);
  EXPECT_EQ(A::parse_bytes("2GB", "x"), size_t{2} << 30);
  EXPECT_THROW(A::parse_bytes("12Q", "x"), Error);
  EXPECT_THROW(A::parse_bytes("", "x"), Error);
  EXPECT_THROW(A::parse_bytes("-1", "x"), Error);
}

TEST_F(GpuTest, AllocatorReusesAndCounts) {
  CudaCachingAllocator alloc(CudaCachingAllocator::Kind::Device, 0);
  void* a = alloc.allocate(1000);
  MemoryStats s = alloc.stats();
  EXPECT_EQ(s.current, 1024u);
  EXPECT_EQ(s.reserved, BlockPool::kSmallSegment);  // one small segment, carved
  alloc.deallocate(a, 1000);
  EXPECT_EQ(alloc.stats().current, 0u);
  void* b = alloc.allocate(900);  // the freed block, merged back into its segment, is the best fit again
  EXPECT_EQ(a, b);
  EXPECT_EQ(alloc.stats().cache_hits, 1u);
  void* c = alloc.allocate(size_t{8} << 20);
  EXPECT_EQ(alloc.stats().peak, 1024u + (size_t{8} << 20));
  alloc.deallocate(b, 900);
  alloc.deallocate(c, size_t{8} << 20);
  alloc.reset_peak();
  EXPECT_EQ(alloc.stats().peak, 0u);
  alloc.empty_cache();
  EXPECT_EQ(alloc.stats().reserved, 0u);
}

TEST_F(GpuTest, AllocatorLimitThrowsWithStats) {
  CudaCachingAllocator alloc(CudaCachingAllocator::Kind::Device, 0);
  alloc.set_limit(size_t{4} << 20);
  void* a = alloc.allocate(size_t{3} << 20);
  try {
    alloc.allocate(size_t{2} << 20);
    FAIL() << "expected the limit to refuse";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of memory"), std::string::npos) << e.what();
  }
  EXPECT_EQ(alloc.stats().reserved, size_t{3} << 20);  // a tight segment: the usual 20 MiB would pass the limit
  alloc.deallocate(a, size_t{3} << 20);
  // The cached 3 MiB block serves the smaller request (best fit; a remainder of 1 MiB is not split off).
  void* b = alloc.allocate(size_t{2} << 20);
  EXPECT_EQ(b, a);
  EXPECT_EQ(alloc.stats().reserved, size_t{3} << 20);
  alloc.deallocate(b, size_t{2} << 20);
  alloc.set_limit(0);
  alloc.empty_cache();
  EXPECT_EQ(alloc.stats().reserved, 0u);
}

TEST_F(GpuTest, AllocatorWaitsForOtherStreams) {
  CudaCachingAllocator alloc(CudaCachingAllocator::Kind::Device, 0);
  auto main = CudaStream::create(0);
  auto side = CudaStream::create(0);
  void* a = alloc.allocate(4096, main->get());
  // Keep the side stream busy: a host function that sleeps stands for a long kernel using `a`.
  KOLO_CUDA_CHECK(cudaLaunchHostFunc(
      side->get(), [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(300)); }, nullptr));
  alloc.record_stream(a, side->get());
  alloc.deallocate(a, 4096);
  void* b = alloc.allocate(4096, main->get());
  EXPECT_NE(a, b) << "block reused while another stream may still use it";
  side->synchronize();
  alloc.deallocate(b, 4096);
  void* c = alloc.allocate(4096, main->get());
  void* d = alloc.allocate(4096, main->get());
  EXPECT_TRUE((c == a || d == a) && (c == b || d == b)) << "both blocks are reusable once the side stream is done";
  // A block owned by one stream is not handed to another.
  alloc.deallocate(c, 4096);
  void* e = alloc.allocate(4096, side->get());
  EXPECT_NE(e, c);
  alloc.deallocate(d, 4096);
  alloc.deallocate(e, 4096);
}

TEST_F(GpuTest, TensorRoundTripThroughDeviceAndStats) {
  const MemoryStats before = cuda_device_allocator(0).stats();
  Tensor x = Tensor::arange(1000, DType::F32);
  {
    Tensor g = x.to(gpu());
    EXPECT_TRUE(g.device().is_cuda());
    EXPECT_GE(cuda_device_allocator(0).stats().current, before.current + 4000);
    EXPECT_EQ(g.to(Device::cpu()).to_vector<float>(), x.to_vector<float>());
  }
  EXPECT_EQ(cuda_device_allocator(0).stats().current, before.current);
}

TEST_F(GpuTest, PinnedBufferCopies) {
  CudaCachingAllocator& pinned = cuda_pinned_allocator();
  const size_t n = 1 << 20;
  auto* host = static_cast<float*>(pinned.allocate(n * sizeof(float)));
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<float>(i % 977);
  Tensor src = Tensor::from_blob(host, {static_cast<int64_t>(n)}, DType::F32, Device::cpu());
  Tensor g = src.to(gpu());
  pinned.deallocate(host, n * sizeof(float));  // reuse is deferred until the async copy has run
  auto* other = static_cast<float*>(pinned.allocate(n * sizeof(float)));
  for (size_t i = 0; i < n; ++i) other[i] = -1.0f;
  const std::vector<float> back = g.to_vector<float>();
  for (size_t i = 0; i < n; i += 4099) ASSERT_EQ(back[i], static_cast<float>(i % 977)) << i;
  pinned.deallocate(other, n * sizeof(float));
}

TEST_F(GpuTest, StreamGuardAndEventsOrderWork) {
  auto side = CudaStream::create(0);
  EXPECT_EQ(&current_cuda_stream(0), &cuda_main_stream(0));
  Tensor a = Tensor::full({1 << 20}, 3.0, DType::F32, gpu());
  CudaEvent produced(0);
  produced.record(cuda_main_stream(0));
  Tensor b;
  {
    CudaStreamGuard guard(*side);
    EXPECT_EQ(&current_cuda_stream(0), side.get());
    produced.block(*side);  // side waits for `a` without a host sync
    b = a.clone();
    CudaEvent done(0);
    done.record(*side);
    done.block(cuda_main_stream(0));
  }
  EXPECT_EQ(&current_cuda_stream(0), &cuda_main_stream(0));
  const std::vector<float> v = b.to_vector<float>();
  EXPECT_EQ(v.front(), 3.0f);
  EXPECT_EQ(v.back(), 3.0f);
  std::unique_ptr<Event> e = device_backend(DeviceType::CUDA).create_event(0);
  e->record(device_backend(DeviceType::CUDA).current_stream(0));
  e->synchronize();
  EXPECT_TRUE(e->query());
}

// Timing-free events are recycled: a stream's wait enqueued on an event must keep waiting for that record
// even after the event went back to the pool and was recorded again elsewhere.
void CUDART_CB hold_100ms(void*) { std::this_thread::sleep_for(std::chrono::milliseconds(100)); }

TEST_F(GpuTest, RecycledEventLeavesEarlierWaitsInPlace) {
  auto side = CudaStream::create(0);
  auto idle = CudaStream::create(0);
  Tensor a = Tensor::full({1 << 20}, 1.0, DType::F32, gpu());
  cuda_main_stream(0).synchronize();
  ASSERT_EQ(cudaLaunchHostFunc(cuda_main_stream(0).get(), hold_100ms, nullptr), cudaSuccess);
  a.copy_(Tensor::full({1 << 20}, 5.0, DType::F32, gpu()));  // runs after the 100 ms hold
  cudaEvent_t raw = nullptr;
  {
    CudaEvent produced(0);
    produced.record(cuda_main_stream(0));
    produced.block(*side);
    raw = produced.get();
  }
  CudaEvent reused(0);
  EXPECT_EQ(reused.get(), raw) << "the pool did not hand back the event just returned";
  reused.record(*idle);  // an empty stream: this record completes at once
  Tensor b;
  {
    CudaStreamGuard guard(*side);
    b = a.clone();
  }
  side->synchronize();
  EXPECT_EQ(b.to_vector<float>().back(), 5.0f);
}

TEST_F(GpuTest, PeerCopyBetweenDevices) {
  if (cuda_device_count() < 2) GTEST_SKIP() << "one CUDA device; peer copy needs two";
  Tensor x = Tensor::arange(4096, DType::F32, Device::cuda(0));
  Tensor y = x.to(Device::cuda(1));
  EXPECT_EQ(y.to_vector<float>(), x.to_vector<float>());
}

}  // namespace
}  // namespace kolo
