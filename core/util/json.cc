// Recursive-descent JSON parser (RFC 8259, no extensions) and writer.
#include "core/util/json.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/util/error.h"

namespace kolo {

namespace {

class Parser {
 public:
  Parser(const std::string& s, size_t max_depth) : s_(s), max_depth_(max_depth) {}

  Json parse_document() {
    Json v = value(0);
    skip_ws();
    if (i_ != s_.size()) fail("trailing characters after the value");
    return v;
  }

 private:
  const std::string& s_;
  size_t max_depth_;
  size_t i_ = 0;

  [[noreturn]] void fail(const std::string& why) { KOLO_FAIL("JSON parse error at byte ", i_, ": ", why); }

  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  char peek() {
    skip_ws();
    if (i_ >= s_.size()) fail("unexpected end of input");
    return s_[i_];
  }

  void expect_word(const char* w) {
    for (const char* p = w; *p; ++p, ++i_)
      if (i_ >= s_.size() || s_[i_] != *p) fail(std::string("expected '") + w + "'");
  }

  Json value(size_t depth) {
    if (depth > max_depth_) fail("nesting deeper than " + std::to_string(max_depth_));
    const char c = peek();
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') return Json(string());
    if (c == 't') return expect_word("true"), Json(true);
    if (c == 'f') return expect_word("false"), Json(false);
    if (c == 'n') return expect_word("null"), Json();
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    fail(std::string("unexpected character '") + c + "'");
  }

  Json object(size_t depth) {
    ++i_;
    Json::Object o;
    if (peek() == '}') {
      ++i_;
      return Json(std::move(o));
    }
    while (true) {
      if (peek() != '"') fail("expected a string key");
      std::string k = string();
      if (peek() != ':') fail("expected ':'");
      ++i_;
      for (const auto& kv : o)
        if (kv.first == k) fail("duplicate key '" + k + "'");
      o.emplace_back(std::move(k), value(depth + 1));
      const char c = peek();
      ++i_;
      if (c == '}') break;
      if (c != ',') fail("expected ',' or '}'");
    }
    return Json(std::move(o));
  }

  Json array(size_t depth) {
    ++i_;
    Json::Array a;
    if (peek() == ']') {
      ++i_;
      return Json(std::move(a));
    }
    while (true) {
      a.push_back(value(depth + 1));
      const char c = peek();
      ++i_;
      if (c == ']') break;
      if (c != ',') fail("expected ',' or ']'");
    }
    return Json(std::move(a));
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  uint32_t hex4() {
    if (i_ + 4 > s_.size()) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
      else fail("bad hex digit in \\u escape");
    }
    return v;
  }

  std::string string() {
    ++i_;  // opening quote
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      const char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xd800 && cp < 0xdc00) {
            if (i_ + 2 > s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u') fail("lone high surrogate");
            i_ += 2;
            const uint32_t lo = hex4();
            if (lo < 0xdc00 || lo >= 0xe000) fail("bad low surrogate");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          } else if (cp >= 0xdc00 && cp < 0xe000) {
            fail("lone low surrogate");
          }
          append_utf8(out, cp);
          break;
        }
        default: fail(std::string("bad escape '\\") + e + "'");
      }
    }
    return out;
  }

  Json number() {
    const size_t start = i_;
    bool is_float = false;
    if (s_[i_] == '-') ++i_;
    if (i_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[i_]))) fail("bad number");
    if (s_[i_] == '0') {
      ++i_;
    } else {
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      is_float = true;
      ++i_;
      if (i_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[i_]))) fail("bad fraction");
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      is_float = true;
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (i_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[i_]))) fail("bad exponent");
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    const std::string text = s_.substr(start, i_ - start);
    if (!is_float) {
      errno = 0;
      char* end = nullptr;
      const long long v = std::strtoll(text.c_str(), &end, 10);
      if (errno == 0) return Json(static_cast<int64_t>(v));
    }
    const double d = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(d)) fail("number out of range");
    return Json(d);
  }
};

}  // namespace

bool Json::as_bool(const char* what) const {
  KOLO_CHECK(is_bool(), what, ": expected a boolean");
  return std::get<bool>(v_);
}

double Json::as_double(const char* what) const {
  KOLO_CHECK(is_number(), what, ": expected a number");
  return is_int() ? static_cast<double>(std::get<int64_t>(v_)) : std::get<double>(v_);
}

int64_t Json::as_int(const char* what) const {
  KOLO_CHECK(is_int(), what, ": expected an integer");
  return std::get<int64_t>(v_);
}

const std::string& Json::as_string(const char* what) const {
  KOLO_CHECK(is_string(), what, ": expected a string");
  return std::get<std::string>(v_);
}

const Json::Array& Json::as_array(const char* what) const {
  KOLO_CHECK(is_array(), what, ": expected an array");
  return std::get<Array>(v_);
}

Json::Array& Json::as_array(const char* what) {
  KOLO_CHECK(is_array(), what, ": expected an array");
  return std::get<Array>(v_);
}

const Json::Object& Json::as_object(const char* what) const {
  KOLO_CHECK(is_object(), what, ": expected an object");
  return std::get<Object>(v_);
}

Json::Object& Json::as_object(const char* what) {
  KOLO_CHECK(is_object(), what, ": expected an object");
  return std::get<Object>(v_);
}

const Json* Json::find(const std::string& key) const {
  if (!is_object()) return nullptr;
  for (const auto& kv : std::get<Object>(v_))
    if (kv.first == key) return &kv.second;
  return nullptr;
}

const Json& Json::at(const std::string& key) const {
  const Json* v = find(key);
  KOLO_CHECK(v != nullptr, "JSON: missing key '", key, "'");
  return *v;
}

Json& Json::operator[](const std::string& key) {
  if (is_null()) v_ = Object{};
  Object& o = as_object("JSON object");
  for (auto& kv : o)
    if (kv.first == key) return kv.second;
  o.emplace_back(key, Json());
  return o.back().second;
}

std::string json_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

void Json::dump_to(std::string& out) const {
  if (is_null()) {
    out += "null";
  } else if (is_bool()) {
    out += std::get<bool>(v_) ? "true" : "false";
  } else if (is_int()) {
    out += std::to_string(std::get<int64_t>(v_));
  } else if (std::holds_alternative<double>(v_)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", std::get<double>(v_));
    out += buf;
  } else if (is_string()) {
    out += '"' + json_escape(std::get<std::string>(v_)) + '"';
  } else if (is_array()) {
    out += '[';
    bool first = true;
    for (const Json& v : std::get<Array>(v_)) {
      if (!first) out += ',';
      first = false;
      v.dump_to(out);
    }
    out += ']';
  } else {
    out += '{';
    bool first = true;
    for (const auto& [k, v] : std::get<Object>(v_)) {
      if (!first) out += ',';
      first = false;
      out += '"' + json_escape(k) + "\":";
      v.dump_to(out);
    }
    out += '}';
  }
}

std::string Json::dump() const {
  std::string out;
  dump_to(out);
  return out;
}

Json Json::parse(const std::string& text, size_t max_depth) { return Parser(text, max_depth).parse_document(); }

}  // namespace kolo
