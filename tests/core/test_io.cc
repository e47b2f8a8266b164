// JSON parser, safetensors round trips and rejection of damaged files, checkpoint rotation, and a
// checkpoint write killed with SIGKILL leaving the previous checkpoint loadable.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/io/checkpoint.h"
#include "core/io/safetensors.h"
#include "core/util/json.h"

using namespace kolo;
namespace fs = std::filesystem;

static std::string temp_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("kolo_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

TEST(Json, ParsesAndDumps) {
  Json v = Json::parse(R"({"a": [1, -2.5, true, null, "x\u00e9\n"], "b": {"c": 12345678901234}})");
  EXPECT_EQ(v.at("a").as_array()[0].as_int(), 1);
  EXPECT_DOUBLE_EQ(v.at("a").as_array()[1].as_double(), -2.5);
  EXPECT_EQ(v.at("a").as_array()[4].as_string(), "x\xc3\xa9\n");
  EXPECT_EQ(v.at("b").at("c").as_int(), 12345678901234);
  EXPECT_EQ(Json::parse(v.dump()).dump(), v.dump());
}

TEST(Json, RejectsMalformedInput) {
  for (const char* bad : {"", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "01", "1.", "\"\\x\"", "\"abc",
                          "{\"a\":1,\"a\":2}", "[1] 2", "nul", "\"\\ud800\"", "1e999"}) {
    EXPECT_THROW(Json::parse(bad), Error) << bad;
  }
  std::string deep(1000, '[');
  EXPECT_THROW(Json::parse(deep), Error);
}

TEST(SafeTensors, RoundTripsEveryDtype) {
  Generator g(1);
  std::vector<std::pair<std::string, Tensor>> ts;
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64, DType::U8})
    ts.emplace_back(std::string("t_") + dtype_name(dt), Tensor::uniform({3, 5}, 0, 100, g).to(dt));
  ts.emplace_back("empty", Tensor::zeros({0, 4}));
  ts.emplace_back("scalar", Tensor::scalar(7));
  ts.emplace_back("strided", Tensor::arange(12).reshape({3, 4}).transpose(0, 1));
  const std::string bytes = encode_safetensors(ts, {{"epoch", "3"}});
  SafeTensors back = decode_safetensors(bytes);
  EXPECT_EQ(back.metadata.at("epoch"), "3");
  ASSERT_EQ(back.tensors.size(), ts.size());
  for (const auto& [name, t] : ts) {
    const Tensor& b = back.at(name);
    EXPECT_EQ(b.dtype(), t.dtype());
    EXPECT_EQ(b.shape(), t.shape());
    EXPECT_EQ(b.to_vector<double>(), t.to_vector<double>()) << name;
  }
}

TEST(SafeTensors, RejectsDamagedFiles) {
  const std::string good = encode_safetensors({{"w", Tensor::ones({4, 4})}});
  auto expect_error = [](const std::string& bytes, const std::string& fragment) {
    try {
      decode_safetensors(bytes, "model.safetensors");
      ADD_FAILURE() << "accepted a damaged file, expected: " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
    }
  };
  expect_error(good.substr(0, 5), "truncated");
  expect_error(good.substr(0, good.size() - 3), "truncated");
  std::string flipped = good;
  flipped[flipped.size() - 5] ^= 0x40;
  expect_error(flipped, "checksum mismatch");
  std::string bad_dtype = good;
  const size_t at = bad_dtype.find("\"F32\"");
  bad_dtype.replace(at, 5, "\"Q32\"");
  expect_error(bad_dtype, "unknown or unsupported dtype");
  std::string huge = good;
  huge[7] = 0x7f;
  expect_error(huge, "header length");
  // 2^61 + 1 doubles: 8 x numel wraps around 2^64 to 8, which the 8-byte range would have matched.
  const std::string header = R"({"w":{"dtype":"F64","shape":[2305843009213693953],"data_offsets":[0,8]}})";
  std::string wrapped(8, '\0');
  for (int i = 0; i < 8; ++i) wrapped[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  expect_error(wrapped + header + std::string(8, '\0'), "bytes do not hold");
}

TEST(Checkpoint, KeepsTheLastK) {
  CheckpointManager mgr(temp_dir("rotate"), 2);
  for (int64_t s : {10, 20, 30}) mgr.save(s, {{"w", Tensor::full({2}, static_cast<double>(s))}});
  auto all = mgr.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, 20);
  auto latest = mgr.load_latest();
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->first, 30);
  EXPECT_EQ(latest->second.at("w").to_vector<float>()[0], 30.f);
  // Corrupt the newest: loading falls back to the previous one.
  {
    std::fstream f(all[1].second, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-2, std::ios::end);
    f.put('\x55');
  }
  latest = mgr.load_latest();
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->first, 20);
}

TEST(Checkpoint, StaleTemporaryFilesOfDeadWritersAreRemoved) {
  const std::string dir = temp_dir("stale");
  const std::string dead = dir + "/.ckpt-000000000007.safetensors.tmp.999999999";  // above any pid_max
  const std::string live = dir + "/.ckpt-000000000008.safetensors.tmp." + std::to_string(::getpid());
  for (const std::string& p : {dead, live}) std::ofstream(p) << "partial";
  CheckpointManager mgr(dir, 2);
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(live));  // a save in progress (this process) is left alone
  fs::remove_all(dir);
}

TEST(Checkpoint, RotationNeverDeletesTheFileJustWritten) {
  CheckpointManager mgr(temp_dir("rotate_lower"), 1);
  mgr.save(300, {{"w", Tensor::full({2}, 300.0)}});
  const std::string path = mgr.save(250, {{"w", Tensor::full({2}, 250.0)}});  // a lower step: another run's
  const auto all = mgr.list();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].first, 250);
  EXPECT_EQ(all[0].second, path);
}

TEST(Checkpoint, SigkillDuringSaveLeavesThePreviousCheckpoint) {
  const std::string dir = temp_dir("kill");
  {
    CheckpointManager mgr(dir, 3);
    mgr.save(1, {{"w", Tensor::full({8}, 1.0)}});
  }
  // A big checkpoint (256 MiB) whose write the parent interrupts. Built before fork(): the child must not
  // start OpenMP work, whose thread pool does not survive fork.
  const Tensor big = Tensor::full({64 << 20}, 2.0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    CheckpointManager mgr(dir, 3);
    mgr.save(2, {{"w", big}});
    ::_exit(0);
  }
  // Wait until the temporary file exists and is growing, then kill -9.
  bool saw_tmp = false;
  for (int i = 0; i < 24000 && !saw_tmp; ++i) {  // up to 120 s on a loaded machine
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().find(".tmp.") != std::string::npos && fs::file_size(e.path()) > 0)
        saw_tmp = true;
    if (!saw_tmp) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(saw_tmp) << "the child never started writing";
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child finished before it was killed";
  CheckpointManager mgr(dir, 3);
  auto latest = mgr.load_latest();
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->first, 1);
  EXPECT_EQ(latest->second.at("w").to_vector<float>()[0], 1.f);
}
