#include "collectives/memory_runs.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "collectives/device_collectives.h"

namespace kolo {

std::vector<MemoryRun> adjacent_runs(const std::vector<InPlaceSpan>& spans) {
  std::vector<size_t> order;
  order.reserve(spans.size());
  for (size_t i = 0; i < spans.size(); ++i)
    if (spans[i].count > 0) order.push_back(i);
  // Group by storage (spans without one stay apart, in input order), then by offset within it.
  auto key = [&](size_t i) {
    const InPlaceSpan& s = spans[i];
    const auto st = reinterpret_cast<uintptr_t>(s.storage);
    return st ? std::make_tuple(st, s.offset, size_t{0}) : std::make_tuple(st, int64_t{0}, i);
  };
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
  std::vector<MemoryRun> runs;
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t i = order[k];
    const InPlaceSpan& s = spans[i];
    const InPlaceSpan* prev = k > 0 ? &spans[order[k - 1]] : nullptr;
    const bool same_storage = prev && s.storage && prev->storage == s.storage;
    if (same_storage && s.offset < prev->offset + prev->count) return {};
    if (same_storage && s.offset == prev->offset + prev->count) {
      runs.back().count += s.count;
      runs.back().members.push_back(i);
    } else {
      runs.push_back({s.data, s.count, {i}});
    }
  }
  // Each run's first tensor in the input's order, taken once rather than inside the comparator.
  std::vector<std::pair<size_t, size_t>> by_first(runs.size());
  for (size_t r = 0; r < runs.size(); ++r)
    by_first[r] = {*std::min_element(runs[r].members.begin(), runs[r].members.end()), r};
  std::sort(by_first.begin(), by_first.end());
  std::vector<MemoryRun> ordered;
  ordered.reserve(runs.size());
  for (const auto& [first, r] : by_first) ordered.push_back(std::move(runs[r]));
  return ordered;
}

std::vector<MemoryRun> in_place_runs(const std::vector<DeviceSpan>& spans) {
  std::vector<InPlaceSpan> in_place;
  in_place.reserve(spans.size());
  for (const DeviceSpan& sp : spans) {
    if (sp.in != sp.out) return {};
    in_place.push_back({sp.out, sp.count, sp.storage, sp.offset});
  }
  return adjacent_runs(in_place);
}

std::vector<DeviceSpan> direct_reductions(const std::vector<DeviceSpan>& spans, bool where_they_lie,
                                          size_t max_runs) {
  const DeviceSpan* sole = nullptr;
  int nonempty = 0;
  for (const DeviceSpan& sp : spans)
    if (sp.count > 0 && ++nonempty == 1) sole = &sp;
  if (nonempty == 1) return {{sole->in, sole->out, sole->count}};
  if (!where_they_lie) return {};
  const std::vector<MemoryRun> runs = in_place_runs(spans);
  if (runs.size() > max_runs) return {};
  std::vector<DeviceSpan> direct;
  for (const MemoryRun& r : runs) direct.push_back({r.data, r.data, r.count});
  return direct;
}

uint64_t run_signature(const std::vector<MemoryRun>& runs) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the member indices, a separator after each run
  auto mix = [&](uint64_t v) {
    for (int b = 0; b < 8; ++b) {
      h ^= (v >> (8 * b)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  for (const MemoryRun& r : runs) {
    for (size_t i : r.members) mix(i);
    mix(~uint64_t{0});
  }
  return h;
}

}  // namespace kolo
