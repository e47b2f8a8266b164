// Coordinator message table, readiness and agreement checks, and the deterministic fusion plan.
#include "collectives/controller.h"

#include <algorithm>
#include <sstream>

#include "core/util/logging.h"

namespace kolo {
namespace {

std::string describe_request(const Request& r) {
  std::ostringstream os;
  os << op_type_name(r.op) << " " << dtype_name(r.dtype) << shape_str(r.shape);
  if (r.op == OpType::Allreduce || r.op == OpType::Reducescatter) os << " " << reduce_op_name(r.reduce);
  if (r.op == OpType::Broadcast) os << " root " << r.root;
  if (r.process_set != 0) os << " process set " << r.process_set;
  return os.str();
}

}  // namespace

Controller::Controller(ControlPlane& control, const Config& config, ResponseCache& cache)
    : control_(control),
      config_(config),
      cache_(cache),
      stall_(config.stall_check_time_s, config.stall_shutdown_time_s),
      fusion_threshold_(config.fusion_threshold),
      cycle_time_ms_(config.cycle_time_ms) {
  std::vector<int> all(control.size());
  for (int r = 0; r < control.size(); ++r) all[r] = r;
  sets_[0] = all;
  if (config.autotune && control.rank() == 0)
    autotune_ = std::make_unique<Autotuner>(config.autotune_window_cycles, config.autotune_log);
}

Controller::Clock::time_point Controller::deadline() const {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(config_.heartbeat_timeout_s));
}

ResponseList Controller::cycle(const RequestList& local) {
  const int n = control_.size();
  if (n == 1) return coordinate({local});
  if (control_.rank() != 0) {
    control_.send_to_coordinator(serialize(local), deadline());
    // Twice the coordinator's own limit, so that when another worker died, rank 0's verdict naming it
    // arrives here before this rank would wrongly blame rank 0.
    const auto reply_deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(2 * config_.heartbeat_timeout_s + 2));
    return deserialize_response_list(control_.receive_from_coordinator(reply_deadline));
  }
  std::vector<int> everyone;
  for (int r = 1; r < n; ++r) everyone.push_back(r);
  if (!local.failure.empty()) {
    // The coordinator's own failure: tell everyone now, without waiting for lists that ranks still inside the
    // failed collective would never send.
    ResponseList abort;
    abort.abort = local.failure;
    control_.send_from_coordinator(serialize(abort), everyone);
    return abort;
  }
  std::vector<RequestList> lists(n);
  lists[0] = local;
  try {
    auto msgs = control_.gather_at_coordinator(deadline());
    for (int r = 1; r < n; ++r) lists[r] = deserialize_request_list(msgs[r]);
  } catch (const LostRankError& e) {
    ResponseList abort;
    abort.abort = e.what();
    std::vector<int> survivors;
    for (int r = 1; r < n; ++r)
      if (r != e.lost_rank()) survivors.push_back(r);
    control_.send_from_coordinator(serialize(abort), survivors);
    throw;
  }
  ResponseList out = coordinate(lists);
  control_.send_from_coordinator(serialize(out), everyone);
  return out;
}

void Controller::add_request(const Request& r, bool cached, int64_t slot) {
  // Disjoint process sets may use one name at the same time (each set's own "grad.w"): the table is keyed by
  // both, in a form that messages show as it is ("grad.w [process set 2]").
  const std::string key = r.process_set == 0 ? r.name : detail::concat(r.name, " [process set ", r.process_set, "]");
  auto [it, inserted] = table_.try_emplace(key);
  Pending& p = it->second;
  if (inserted) {
    p.by_rank.resize(control_.size());
    p.first_seen = Clock::now();
    order_.push_back(key);
  }
  if (r.rank < 0 || r.rank >= control_.size() || p.by_rank[r.rank]) {
    KOLO_LOG(Warning, "coordinator: ignoring a second request for '", r.name, "' from rank ", r.rank);
    return;
  }
  p.by_rank[r.rank] = r;
  ++p.submitted;
  p.all_cached = p.all_cached && cached;
  if (cached) p.slot = slot;
}

std::string Controller::mismatch_message(const std::string& name, const Pending& p) const {
  const Request* ref = nullptr;
  std::vector<int> offenders;
  std::string what;
  for (const auto& r : p.by_rank) {
    if (!r) continue;
    if (!ref) {
      ref = &*r;
      continue;
    }
    const std::string m = ref->mismatch(*r);
    if (!m.empty()) {
      if (what.empty()) what = m;
      offenders.push_back(r->rank);
    }
  }
  if (offenders.empty()) return {};
  std::ostringstream os;
  os << "kolo: mismatched requests for tensor '" << name << "': rank " << ref->rank << " submitted "
     << describe_request(*ref) << " but rank";
  os << (offenders.size() > 1 ? "s " : " ");
  for (size_t i = 0; i < offenders.size(); ++i) os << (i ? ", " : "") << offenders[i];
  os << " differ (" << what << ")";
  return os.str();
}

std::optional<Response> Controller::check_ready(const std::string& name, Pending& p, bool* cached) {
  const Request* first = nullptr;
  for (const auto& r : p.by_rank)
    if (r && !first) first = &*r;
  Response resp;
  resp.op = first->op;
  resp.names = {first->name};
  resp.process_set = first->process_set;
  auto set_it = sets_.find(first->process_set);
  if (set_it == sets_.end()) {
    resp.error = detail::concat("kolo: tensor '", name, "' uses unknown process set ", first->process_set);
    return resp;
  }
  std::vector<int> missing;
  for (int r : set_it->second)
    if (!p.by_rank[r]) missing.push_back(r);
  bool served_by_joined = false;
  if (!missing.empty()) {
    const bool all_joined =
        std::all_of(missing.begin(), missing.end(), [&](int r) { return joined_.count(r) > 0; });
    if (!all_joined) return std::nullopt;
    if (first->op != OpType::Allreduce || first->process_set != 0) {
      resp.error = detail::concat("kolo: tensor '", name, "' (", op_type_name(first->op),
                                  ") cannot complete: ranks that called join() only serve allreduce on the "
                                  "global process set");
      return resp;
    }
    served_by_joined = true;
  }
  resp.error = mismatch_message(name, p);
  if (resp.error.empty()) resp.params = {*first};
  *cached = resp.error.empty() && p.all_cached && !served_by_joined && p.slot >= 0;
  return resp;
}

bool Controller::steady_state(const std::vector<RequestList>& lists) const {
  if (!table_.empty() || !joined_.empty() || !shutdown_.empty()) return false;
  for (const RequestList& list : lists)
    if (!list.requests.empty() || list.joined || list.shutdown || list.cached_bits != lists[0].cached_bits)
      return false;
  return true;
}

ResponseList Controller::coordinate(const std::vector<RequestList>& lists) {
  const int n = control_.size();
  for (const RequestList& list : lists)
    if (!list.failure.empty()) {
      ResponseList out;
      out.abort = list.failure;
      return out;
    }
  if (steady_state(lists)) {
    // Every rank offered the same cached requests and nothing else is pending: exactly what the general
    // path below would answer (all of them ready, as cache bits), without building the message table.
    ResponseList out;
    out.cached_ready = lists[0].cached_bits;
    if (autotune_) {
      int64_t ready_bytes = 0;
      for_each_bit(out.cached_ready, [&](int64_t slot) { ready_bytes += wire_bytes(cache_.at(slot)); });
      autotune_->observe(ready_bytes, Clock::now(), &fusion_threshold_, &cycle_time_ms_);
    }
    out.fusion_threshold = fusion_threshold_;
    out.cycle_time_ms = cycle_time_ms_;
    return out;
  }
  for (int r = 0; r < n; ++r) {
    const RequestList& list = lists[r];
    for_each_bit(list.cached_bits, [&](int64_t slot) {
      Request req = cache_.at(slot);
      req.rank = r;
      add_request(req, true, slot);
    });
    for (const auto& req : list.requests) add_request(req, false, -1);
    if (list.joined && !joined_.count(r)) {
      joined_.insert(r);
      last_joined_ = r;
    }
    if (list.shutdown) shutdown_.insert(r);
  }

  ResponseList out;
  out.cached_ready.assign(cache_.words(), 0);
  int64_t ready_bytes = 0;
  std::vector<std::string> still_pending;
  for (const auto& name : order_) {
    Pending& p = table_.at(name);
    bool cached = false;
    auto resp = check_ready(name, p, &cached);
    if (!resp) {
      still_pending.push_back(name);
      continue;
    }
    if (!resp->params.empty()) ready_bytes += wire_bytes(resp->params[0]);
    if (cached)
      set_bit(out.cached_ready, p.slot);
    else
      out.responses.push_back(std::move(*resp));
    stall_.forget(name);
    table_.erase(name);
  }
  order_ = std::move(still_pending);

  if (!joined_.empty() && static_cast<int>(joined_.size()) == n) {
    Response join;
    join.op = OpType::Join;
    join.names = {"__join"};
    Request params;
    params.name = "__join";
    params.op = OpType::Join;
    params.root = last_joined_;
    join.params = {params};
    out.responses.push_back(join);
    joined_.clear();
  }

  // join() completes only once every rank joined: a rank that shut down without joining never will.
  if (!joined_.empty())
    for (int r : shutdown_)
      if (!joined_.count(r) && out.abort.empty()) {
        std::ostringstream waiting;
        for (int q : joined_) waiting << (waiting.tellp() > 0 ? ", " : "") << q;
        out.abort = detail::concat("kolo: rank ", r, " shut down (its Runtime was shut down or destroyed, e.g. by an ",
                                   "exception) while ranks [", waiting.str(), "] wait in join() for every rank");
      }

  std::vector<StallInspector::Pending> pending;
  for (const auto& name : order_) {
    const Pending& p = table_.at(name);
    StallInspector::Pending sp{name, p.first_seen, {}, {}};
    int set_id = 0;
    for (const auto& r : p.by_rank)
      if (r) set_id = r->process_set;
    auto set_it = sets_.find(set_id);
    if (set_it == sets_.end()) continue;
    for (int r : set_it->second) (p.by_rank[r] ? sp.submitted : sp.missing).push_back(r);
    // A rank that shut down submits nothing more (e.g. its Runtime was destroyed while an exception
    // unwound its training loop): the tensor can never complete, so fail every rank now instead of hanging.
    for (int r : sp.missing)
      if (shutdown_.count(r) && !joined_.count(r) && out.abort.empty())
        out.abort = detail::concat("kolo: rank ", r, " shut down (its Runtime was shut down or destroyed, e.g. by ",
                                   "an exception) while tensor '", name, "' submitted by other ranks waits for it");
    pending.push_back(std::move(sp));
  }
  const std::string report = stall_.check(pending, Clock::now(), &out.abort);
  if (!report.empty()) KOLO_LOG(Warning, report);

  if (autotune_) autotune_->observe(ready_bytes, Clock::now(), &fusion_threshold_, &cycle_time_ms_);
  out.fusion_threshold = fusion_threshold_;
  out.cycle_time_ms = cycle_time_ms_;
  out.shutdown = static_cast<int>(shutdown_.size()) == n;
  return out;
}

int64_t wire_bytes(const Request& r) {
  const bool compressed = r.compression != Compression::None && (r.dtype == DType::F32 || r.dtype == DType::F64);
  return shape_numel(r.shape) * static_cast<int64_t>(compressed ? 2 : dtype_size(r.dtype));
}

std::vector<FusedGroup> plan_fusion(const std::vector<Request>& ready, int64_t threshold) {
  std::vector<FusedGroup> groups;
  std::vector<int64_t> bytes;
  for (size_t i = 0; i < ready.size(); ++i) {
    const Request& r = ready[i];
    const int64_t need = (wire_bytes(r) + kFusionAlignment - 1) / kFusionAlignment * kFusionAlignment;
    if (r.op == OpType::Allreduce) {
      bool placed = false;
      for (size_t g = 0; g < groups.size() && !placed; ++g) {
        if (groups[g].op != OpType::Allreduce || !ready[groups[g].items[0]].fusable_with(r)) continue;
        if (bytes[g] + need > threshold) continue;
        groups[g].items.push_back(i);
        bytes[g] += need;
        placed = true;
      }
      if (placed) continue;
    }
    groups.push_back({r.op, {i}});
    bytes.push_back(need);
  }
  return groups;
}

std::vector<std::pair<size_t, size_t>> plan_device_buckets(const std::vector<int64_t>& bytes, int64_t bucket_bytes) {
  std::vector<std::pair<size_t, size_t>> ranges;
  size_t begin = 0;
  while (begin < bytes.size()) {
    size_t end = begin + 1;
    int64_t total = bytes[begin];
    while (end < bytes.size() && (bucket_bytes == 0 || total + bytes[end] <= bucket_bytes)) total += bytes[end++];
    ranges.emplace_back(begin, end);
    begin = end;
  }
  return ranges;
}

}  // namespace kolo
