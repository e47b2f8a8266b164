// safetensors encode/decode with per-tensor CRC-32 (zlib).
#include "core/io/safetensors.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/io/atomic_file.h"
#include "core/util/json.h"

namespace kolo {

namespace {

constexpr const char* kCrcPrefix = "kolo.crc32.";
constexpr uint64_t kMaxHeader = 100u << 20;  // the format's own limit is 100 MB

uint32_t crc32_of(const void* data, size_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  while (n > 0) {  // zlib takes uInt lengths
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    c = crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(c);
}

std::string hex32(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

}  // namespace

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
  }
  KOLO_FAIL("safetensors: unknown dtype code ", static_cast<int>(t));
}

DType dtype_from_safetensors(const std::string& s, const std::string& source) {
  if (s == "F32") return DType::F32;
  if (s == "F64") return DType::F64;
  if (s == "BF16") return DType::BF16;
  if (s == "F16") return DType::F16;
  if (s == "I32") return DType::I32;
  if (s == "I64") return DType::I64;
  if (s == "U8") return DType::U8;
  KOLO_FAIL(source, ": unknown or unsupported dtype '", s, "'");
}

const Tensor* SafeTensors::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

const Tensor& SafeTensors::at(const std::string& name) const {
  const Tensor* t = find(name);
  KOLO_CHECK(t != nullptr, "safetensors: no tensor named '", name, "'");
  return *t;
}

std::string encode_safetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  std::vector<Tensor> host;
  Json header = Json::object();
  Json meta = Json::object();
  for (const auto& [k, v] : metadata) {
    KOLO_CHECK(k.rfind(kCrcPrefix, 0) != 0, "safetensors: metadata key '", k, "' is reserved");
    meta[k] = Json(v);
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    KOLO_CHECK(!name.empty() && name != "__metadata__", "safetensors: invalid tensor name '", name, "'");
    KOLO_CHECK(header.find(name) == nullptr, "safetensors: duplicate tensor name '", name, "'");
    Tensor h = t.to_dense().to(Device::cpu()).contiguous();
    Json entry = Json::object();
    entry["dtype"] = Json(safetensors_dtype(h.dtype()));
    Json shape = Json::array();
    for (int64_t d : h.shape()) shape.push_back(Json(d));
    entry["shape"] = shape;
    Json offs = Json::array();
    offs.push_back(Json(static_cast<int64_t>(offset)));
    offs.push_back(Json(static_cast<int64_t>(offset + h.nbytes())));
    entry["data_offsets"] = offs;
    header[name] = entry;
    meta[kCrcPrefix + name] = Json(hex32(h.nbytes() ? crc32_of(h.data_ptr(), h.nbytes()) : 0));
    offset += h.nbytes();
    host.push_back(h);
  }
  header["__metadata__"] = meta;
  std::string json = header.dump();
  // Pad the header with spaces so tensor data starts 8-byte aligned, as the reference writer does.
  while ((8 + json.size()) % 8) json += ' ';
  std::string out;
  out.reserve(8 + json.size() + offset);
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  out += json;
  for (const Tensor& h : host)
    if (h.nbytes()) out.append(static_cast<const char*>(h.data_ptr()), h.nbytes());
  return out;
}

SafeTensors decode_safetensors(const std::string& bytes, const std::string& source) {
  KOLO_CHECK(bytes.size() >= 8, source, ": truncated (", bytes.size(), " bytes, no header length)");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  KOLO_CHECK(n <= kMaxHeader, source, ": header length ", n, " exceeds the 100 MB limit (corrupt file?)");
  KOLO_CHECK(8 + n <= bytes.size(), source, ": truncated (header says ", n, " bytes, file has ",
             bytes.size() - 8, ")");
  Json header;
  try {
    header = Json::parse(bytes.substr(8, n));
  } catch (const Error& e) {
    KOLO_FAIL(source, ": bad header: ", e.what());
  }
  KOLO_CHECK(header.is_object(), source, ": header is not a JSON object");
  const uint64_t data_size = bytes.size() - 8 - n;
  const char* data = bytes.data() + 8 + n;

  SafeTensors out;
  std::map<std::string, std::string> crcs;
  if (const Json* meta = header.find("__metadata__")) {
    KOLO_CHECK(meta->is_object(), source, ": __metadata__ is not an object");
    for (const auto& [k, v] : meta->as_object()) {
      KOLO_CHECK(v.is_string(), source, ": metadata value for '", k, "' is not a string");
      if (k.rfind(kCrcPrefix, 0) == 0) crcs[k.substr(std::strlen(kCrcPrefix))] = v.as_string();
      else out.metadata[k] = v.as_string();
    }
  }
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : header.as_object()) {
    if (name == "__metadata__") continue;
    const std::string ctx = source + ": tensor '" + name + "'";
    KOLO_CHECK(entry.is_object(), ctx, ": entry is not an object");
    const Json* dt = entry.find("dtype");
    const Json* sh = entry.find("shape");
    const Json* of = entry.find("data_offsets");
    KOLO_CHECK(dt && dt->is_string() && sh && sh->is_array() && of && of->is_array(), ctx,
               ": needs dtype (string), shape (array) and data_offsets (array)");
    const DType dtype = dtype_from_safetensors(dt->as_string(), ctx);
    Shape shape;
    uint64_t numel = 1;
    for (const Json& d : sh->as_array()) {
      KOLO_CHECK(d.is_int() && d.as_int() >= 0, ctx, ": shape entries must be non-negative integers");
      const uint64_t dim = static_cast<uint64_t>(d.as_int());
      KOLO_CHECK(dim == 0 || numel <= (uint64_t{1} << 62) / dim, ctx, ": shape overflows");
      numel *= dim;
      shape.push_back(d.as_int());
    }
    KOLO_CHECK(shape.size() <= 16, ctx, ": more than 16 dimensions");
    const auto& offs = of->as_array();
    KOLO_CHECK(offs.size() == 2 && offs[0].is_int() && offs[1].is_int(), ctx, ": data_offsets must be [begin, end]");
    const int64_t b = offs[0].as_int(), e = offs[1].as_int();
    KOLO_CHECK(b >= 0 && e >= b && static_cast<uint64_t>(e) <= data_size, ctx, ": data_offsets [", b, ", ", e,
               "] outside the ", data_size, "-byte data section (truncated file?)");
    // Divided, not multiplied: numel x element size may wrap around 2^64 and match a tiny range.
    const uint64_t bytes = static_cast<uint64_t>(e - b), elem = static_cast<uint64_t>(dtype_size(dtype));
    KOLO_CHECK(bytes % elem == 0 && bytes / elem == numel, ctx, ": ", e - b, " bytes do not hold ",
               dtype_name(dtype), shape_str(shape));
    ranges.emplace_back(b, e);
    if (auto it = crcs.find(name); it != crcs.end()) {
      const std::string got = hex32(e > b ? crc32_of(data + b, static_cast<size_t>(e - b)) : 0);
      KOLO_CHECK(got == it->second, ctx, ": checksum mismatch (stored ", it->second, ", computed ", got,
                 ") — the file is corrupted");
    }
    Tensor t = Tensor::empty(shape, dtype);
    if (e > b) std::memcpy(t.data_ptr(), data + b, static_cast<size_t>(e - b));
    t.set_name(name);
    out.tensors.emplace_back(name, t);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    KOLO_CHECK(ranges[i].first >= ranges[i - 1].second, source, ": tensors overlap in the data section");
  return out;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomically(path, encode_safetensors(tensors, metadata));
}

SafeTensors load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  KOLO_CHECK(in.good(), path, ": cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  return decode_safetensors(ss.str(), path);
}

}  // namespace kolo
