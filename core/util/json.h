// A small JSON value with a strict parser (depth- and size-limited, errors carry the byte offset) and a
// writer. Used for safetensors headers, timelines and reports.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace kolo {

class Json {
 public:
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;  // keeps insertion order

  Json() = default;  // null
  Json(bool b) : v_(b) {}
  Json(double d) : v_(d) {}
  Json(int64_t i) : v_(i) {}
  Json(int i) : v_(static_cast<int64_t>(i)) {}
  Json(uint64_t i) : v_(static_cast<int64_t>(i)) {}
  Json(const char* s) : v_(std::string(s)) {}
  Json(std::string s) : v_(std::move(s)) {}
  Json(Array a) : v_(std::move(a)) {}
  Json(Object o) : v_(std::move(o)) {}

  static Json object() { return Json(Object{}); }
  static Json array() { return Json(Array{}); }

  bool is_null() const { return std::holds_alternative<std::monostate>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_number() const { return is_int() || std::holds_alternative<double>(v_); }
  bool is_int() const { return std::holds_alternative<int64_t>(v_); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_array() const { return std::holds_alternative<Array>(v_); }
  bool is_object() const { return std::holds_alternative<Object>(v_); }

  // Typed accessors throw kolo::Error naming `what` when the type differs.
  bool as_bool(const char* what = "json value") const;
  double as_double(const char* what = "json value") const;
  int64_t as_int(const char* what = "json value") const;
  const std::string& as_string(const char* what = "json value") const;
  const Array& as_array(const char* what = "json value") const;
  const Object& as_object(const char* what = "json value") const;
  Array& as_array(const char* what = "json value");
  Object& as_object(const char* what = "json value");

  const Json* find(const std::string& key) const;  // nullptr when absent or not an object
  const Json& at(const std::string& key) const;    // throws when absent
  Json& operator[](const std::string& key);        // inserts null when absent (object only)
  void push_back(Json v) { as_array().push_back(std::move(v)); }

  std::string dump() const;
  static Json parse(const std::string& text, size_t max_depth = 64);

 private:
  std::variant<std::monostate, bool, int64_t, double, std::string, Array, Object> v_;
  void dump_to(std::string& out) const;
};

std::string json_escape(const std::string& s);

}  // namespace kolo
