// Names of the collective vocabulary and a small length-prefixed binary encoding of the messages.
#include "collectives/types.h"

#include <cstring>

#include "core/util/error.h"

namespace kolo {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Average: return "average";
    case ReduceOp::Min: return "min";
    case ReduceOp::Max: return "max";
    case ReduceOp::Product: return "product";
  }
  return "?";
}

const char* op_type_name(OpType op) {
  switch (op) {
    case OpType::Allreduce: return "ALLREDUCE";
    case OpType::Allgather: return "ALLGATHER";
    case OpType::Broadcast: return "BROADCAST";
    case OpType::Alltoall: return "ALLTOALL";
    case OpType::Reducescatter: return "REDUCESCATTER";
    case OpType::Barrier: return "BARRIER";
    case OpType::Join: return "JOIN";
    case OpType::ProcessSetCreate: return "PROCESS_SET_CREATE";
  }
  return "?";
}

const char* compression_name(Compression c) {
  switch (c) {
    case Compression::None: return "none";
    case Compression::F16: return "fp16";
    case Compression::BF16: return "bf16";
  }
  return "?";
}

Compression compression_from_name(const std::string& name) {
  if (name == "none" || name.empty()) return Compression::None;
  if (name == "fp16" || name == "f16") return Compression::F16;
  if (name == "bf16") return Compression::BF16;
  KOLO_FAIL("compression '", name, "' is not one of none, fp16, bf16");
}

std::string Request::mismatch(const Request& o) const {
  if (op != o.op) return detail::concat("op ", op_type_name(op), " vs ", op_type_name(o.op));
  if (dtype != o.dtype) return detail::concat("dtype ", dtype_name(dtype), " vs ", dtype_name(o.dtype));
  if (device != o.device) {
    auto kind = [](DeviceType t) { return t == DeviceType::CPU ? "cpu" : "cuda"; };
    return detail::concat("device ", kind(device), " vs ", kind(o.device));
  }
  const bool first_dim_free = op == OpType::Allgather || op == OpType::Alltoall;
  if (first_dim_free) {
    if (shape.size() != o.shape.size() ||
        (shape.size() > 1 && !std::equal(shape.begin() + 1, shape.end(), o.shape.begin() + 1)))
      return detail::concat("shape ", shape_str(shape), " vs ", shape_str(o.shape),
                            " (only the first dimension may differ)");
  } else if (shape != o.shape) {
    return detail::concat("shape ", shape_str(shape), " vs ", shape_str(o.shape));
  }
  if (op == OpType::Allreduce || op == OpType::Reducescatter) {
    if (reduce != o.reduce) return detail::concat("reduce op ", reduce_op_name(reduce), " vs ", reduce_op_name(o.reduce));
    if (prescale != o.prescale || postscale != o.postscale)
      return detail::concat("scale factors (", prescale, ", ", postscale, ") vs (", o.prescale, ", ", o.postscale, ")");
    if (compression != o.compression)
      return detail::concat("compression ", compression_name(compression), " vs ", compression_name(o.compression));
  }
  if (op == OpType::Broadcast && root != o.root) return detail::concat("root ", root, " vs ", o.root);
  if (process_set != o.process_set) return detail::concat("process set ", process_set, " vs ", o.process_set);
  if (ranks != o.ranks) return "process set member lists differ";
  return {};
}

bool Request::fusable_with(const Request& o) const {
  return op == OpType::Allreduce && o.op == OpType::Allreduce && dtype == o.dtype && device == o.device &&
         reduce == o.reduce && prescale == o.prescale && postscale == o.postscale && process_set == o.process_set &&
         compression == o.compression;
}

namespace {

class Writer {
 public:
  template <typename T>
  void put(const T& v) {
    const size_t at = bytes.size();
    bytes.resize(at + sizeof(T));
    std::memcpy(bytes.data() + at, &v, sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint32_t>(static_cast<uint32_t>(s.size()));
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  template <typename T>
  void put_vector(const std::vector<T>& v) {
    put<uint32_t>(static_cast<uint32_t>(v.size()));
    for (const T& x : v) put(x);
  }
  std::vector<uint8_t> bytes;
};

class Reader {
 public:
  explicit Reader(const std::vector<uint8_t>& b) : bytes_(b) {}
  template <typename T>
  T get() {
    KOLO_CHECK(pos_ + sizeof(T) <= bytes_.size(), "collectives: truncated control message (", bytes_.size(), " bytes)");
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string get_string() {
    const uint32_t n = get<uint32_t>();
    KOLO_CHECK(pos_ + n <= bytes_.size(), "collectives: truncated control message string");
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  template <typename T>
  std::vector<T> get_vector() {
    const uint32_t n = get<uint32_t>();
    std::vector<T> v(n);
    for (auto& x : v) x = get<T>();
    return v;
  }

 private:
  const std::vector<uint8_t>& bytes_;
  size_t pos_ = 0;
};

void put_request(Writer& w, const Request& r) {
  w.put_string(r.name);
  w.put(r.rank);
  w.put(r.op);
  w.put(r.reduce);
  w.put(r.dtype);
  w.put(r.device);
  w.put_vector(r.shape);
  w.put(r.root);
  w.put(r.prescale);
  w.put(r.postscale);
  w.put(r.process_set);
  w.put(r.compression);
  w.put_vector(r.ranks);
}

Request get_request(Reader& rd) {
  Request r;
  r.name = rd.get_string();
  r.rank = rd.get<int32_t>();
  r.op = rd.get<OpType>();
  r.reduce = rd.get<ReduceOp>();
  r.dtype = rd.get<DType>();
  r.device = rd.get<DeviceType>();
  r.shape = rd.get_vector<int64_t>();
  r.root = rd.get<int32_t>();
  r.prescale = rd.get<double>();
  r.postscale = rd.get<double>();
  r.process_set = rd.get<int32_t>();
  r.compression = rd.get<Compression>();
  r.ranks = rd.get_vector<int32_t>();
  return r;
}

}  // namespace

std::vector<uint8_t> serialize(const RequestList& list) {
  Writer w;
  w.put<uint32_t>(static_cast<uint32_t>(list.requests.size()));
  for (const auto& r : list.requests) put_request(w, r);
  w.put_vector(list.cached_bits);
  w.put<uint8_t>(list.shutdown);
  w.put<uint8_t>(list.joined);
  w.put_string(list.failure);
  return std::move(w.bytes);
}

RequestList deserialize_request_list(const std::vector<uint8_t>& bytes) {
  Reader rd(bytes);
  RequestList list;
  const uint32_t n = rd.get<uint32_t>();
  for (uint32_t i = 0; i < n; ++i) list.requests.push_back(get_request(rd));
  list.cached_bits = rd.get_vector<uint64_t>();
  list.shutdown = rd.get<uint8_t>() != 0;
  list.joined = rd.get<uint8_t>() != 0;
  list.failure = rd.get_string();
  return list;
}

std::vector<uint8_t> serialize(const ResponseList& list) {
  Writer w;
  w.put_vector(list.cached_ready);
  w.put<uint32_t>(static_cast<uint32_t>(list.responses.size()));
  for (const auto& r : list.responses) {
    w.put(r.op);
    w.put<uint32_t>(static_cast<uint32_t>(r.names.size()));
    for (const auto& n : r.names) w.put_string(n);
    w.put<uint32_t>(static_cast<uint32_t>(r.params.size()));
    for (const auto& p : r.params) put_request(w, p);
    w.put_string(r.error);
    w.put<int32_t>(r.process_set);
  }
  w.put_string(list.abort);
  w.put<uint8_t>(list.shutdown);
  w.put(list.fusion_threshold);
  w.put(list.cycle_time_ms);
  return std::move(w.bytes);
}

ResponseList deserialize_response_list(const std::vector<uint8_t>& bytes) {
  Reader rd(bytes);
  ResponseList list;
  list.cached_ready = rd.get_vector<uint64_t>();
  const uint32_t n = rd.get<uint32_t>();
  for (uint32_t i = 0; i < n; ++i) {
    Response r;
    r.op = rd.get<OpType>();
    const uint32_t nn = rd.get<uint32_t>();
    for (uint32_t j = 0; j < nn; ++j) r.names.push_back(rd.get_string());
    const uint32_t np = rd.get<uint32_t>();
    for (uint32_t j = 0; j < np; ++j) r.params.push_back(get_request(rd));
    r.error = rd.get_string();
    r.process_set = rd.get<int32_t>();
    list.responses.push_back(std::move(r));
  }
  list.abort = rd.get_string();
  list.shutdown = rd.get<uint8_t>() != 0;
  list.fusion_threshold = rd.get<int64_t>();
  list.cycle_time_ms = rd.get<double>();
  return list;
}

}  // namespace kolo
