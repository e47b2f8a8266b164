// Checkpoint rotation and fallback loading.
#include "core/io/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/io/atomic_file.h"
#include "core/util/logging.h"

namespace kolo {

namespace fs = std::filesystem;

CheckpointManager::CheckpointManager(std::string dir, int keep_last, std::string prefix)
    : dir_(std::move(dir)), keep_last_(keep_last), prefix_(std::move(prefix)) {
  KOLO_CHECK(keep_last_ >= 1, "CheckpointManager: keep_last must be >= 1, got ", keep_last_);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  KOLO_CHECK(!ec, dir_, ": cannot create checkpoint directory (", ec.message(), ")");
  remove_abandoned_temporaries(dir_, prefix_ + "-");  // saves cut short (a preempted job)
}

std::string CheckpointManager::save(int64_t step, const std::vector<std::pair<std::string, Tensor>>& tensors,
                                    const std::map<std::string, std::string>& metadata) {
  KOLO_CHECK(step >= 0, "CheckpointManager::save: negative step ", step);
  char name[64];
  std::snprintf(name, sizeof name, "-%012lld.safetensors", static_cast<long long>(step));
  const std::string path = (fs::path(dir_) / (prefix_ + name)).string();
  auto meta = metadata;
  meta["kolo.step"] = std::to_string(step);
  save_safetensors(path, tensors, meta);
  // The oldest go, never the file just written (a directory may hold higher steps of another run).
  auto all = list();
  for (size_t i = 0; i < all.size() && static_cast<int>(all.size()) > keep_last_;) {
    if (all[i].first == step) {
      ++i;
      continue;
    }
    std::error_code ec;
    fs::remove(all[i].second, ec);
    all.erase(all.begin() + static_cast<std::ptrdiff_t>(i));
  }
  return path;
}

std::vector<std::pair<int64_t, std::string>> CheckpointManager::list() const {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string fname = entry.path().filename().string();
    const std::string head = prefix_ + "-", tail = ".safetensors";
    if (fname.size() <= head.size() + tail.size() || fname.rfind(head, 0) != 0 ||
        fname.compare(fname.size() - tail.size(), tail.size(), tail) != 0)
      continue;
    const std::string digits = fname.substr(head.size(), fname.size() - head.size() - tail.size());
    if (digits.empty() || digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos)
      continue;
    out.emplace_back(std::stoll(digits), entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::pair<int64_t, SafeTensors>> CheckpointManager::load_latest() const {
  auto all = list();
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      return std::make_pair(it->first, load_safetensors(it->second));
    } catch (const Error& e) {
      KOLO_LOG(Warning, "skipping unreadable checkpoint: ", e.what());
    }
  }
  return std::nullopt;
}

}  // namespace kolo
