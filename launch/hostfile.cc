// Hostfile and -H list parsing for kolorun; every malformed input becomes a kolo::Error with its location.
#include "launch/hostfile.h"

#include <algorithm>
#include <cctype>

#include "core/util/error.h"

namespace kolo::launch {
namespace {

bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

// Quotes an input fragment for an error message, dropping bytes a terminal would misprint.
std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 80)) {
    out += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
  }
  if (text.size() > 80) out += "...";
  return "'" + out + "'";
}

void check_host_name(std::string_view name, const std::string& where) {
  KOLO_CHECK(!name.empty(), "kolorun: ", where, ": empty host name");
  KOLO_CHECK(name.size() <= 253, "kolorun: ", where, ": host name longer than 253 characters");
  KOLO_CHECK(std::isalnum(static_cast<unsigned char>(name.front())), "kolorun: ", where, ": host name ",
             printable(name), " must start with a letter or digit");
  KOLO_CHECK(std::all_of(name.begin(), name.end(), is_name_char), "kolorun: ", where, ": host name ",
             printable(name), " may only contain letters, digits, '.', '-' and '_'");
}

int parse_count(std::string_view text, const std::string& what, const std::string& where) {
  KOLO_CHECK(!text.empty(), "kolorun: ", where, ": ", what, " is empty");
  KOLO_CHECK(std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }),
             "kolorun: ", where, ": ", what, " ", printable(text), " is not a positive integer");
  // Digit count bounds the value before accumulating, so no overflow is possible.
  KOLO_CHECK(text.size() <= 6, "kolorun: ", where, ": ", what, " ", printable(text), " exceeds ",
             kMaxSlotsPerHost);
  int value = 0;
  for (char c : text) value = value * 10 + (c - '0');
  KOLO_CHECK(value > 0, "kolorun: ", where, ": ", what, " must be at least 1");
  KOLO_CHECK(value <= kMaxSlotsPerHost, "kolorun: ", where, ": ", what, " ", value, " exceeds ",
             kMaxSlotsPerHost);
  return value;
}

// Splits "host:N" into name and count; a bare name has no count.
HostSlots parse_host_with_count(std::string_view token, const std::string& where) {
  HostSlots host;
  const size_t colon = token.find(':');
  if (colon == std::string_view::npos) {
    check_host_name(token, where);
    host.name = std::string(token);
    return host;
  }
  check_host_name(token.substr(0, colon), where);
  host.name = std::string(token.substr(0, colon));
  host.slots = parse_count(token.substr(colon + 1), "slot count", where);
  return host;
}

std::vector<std::string_view> split_whitespace(std::string_view line) {
  std::vector<std::string_view> tokens;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    const size_t start = i;
    while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i > start) tokens.push_back(line.substr(start, i - start));
  }
  return tokens;
}

// Adds `host` to `hosts`, summing slots with an earlier entry of the same name (mpirun's behaviour).
void merge_host(std::vector<HostSlots>& hosts, HostSlots host, const std::string& where) {
  auto it = std::find_if(hosts.begin(), hosts.end(), [&](const HostSlots& h) { return h.name == host.name; });
  if (it == hosts.end()) {
    hosts.push_back(std::move(host));
    return;
  }
  KOLO_CHECK(it->slots.has_value() == host.slots.has_value(), "kolorun: ", where, ": host ", host.name,
             " is listed both with and without a slot count");
  if (it->slots) {
    it->slots = *it->slots + *host.slots;
    KOLO_CHECK(*it->slots <= kMaxSlotsPerHost, "kolorun: ", where, ": host ", host.name, " totals more than ",
               kMaxSlotsPerHost, " slots");
  }
}

}  // namespace

std::vector<HostSlots> parse_hostfile(std::string_view text, std::string_view source) {
  std::vector<HostSlots> hosts;
  size_t line_start = 0;
  int line_number = 0;
  while (line_start <= text.size()) {
    size_t line_end = text.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = text.size();
    std::string_view line = text.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    ++line_number;
    if (const size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    const auto tokens = split_whitespace(line);
    if (tokens.empty()) continue;
    const std::string where = std::string(source) + ":" + std::to_string(line_number);

    HostSlots host = parse_host_with_count(tokens[0], where);
    std::optional<int> max_slots;
    for (size_t i = 1; i < tokens.size(); ++i) {
      const std::string_view token = tokens[i];
      const size_t eq = token.find('=');
      KOLO_CHECK(eq != std::string_view::npos, "kolorun: ", where, ": expected key=value after the host name, got ",
                 printable(token));
      const std::string_view key = token.substr(0, eq);
      const std::string_view value = token.substr(eq + 1);
      if (key == "slots" || key == "cpu" || key == "cpus") {
        KOLO_CHECK(!host.slots, "kolorun: ", where, ": slot count given twice for host ", host.name);
        host.slots = parse_count(value, "slots", where);
      } else if (key == "max_slots" || key == "max-slots") {
        KOLO_CHECK(!max_slots, "kolorun: ", where, ": max_slots given twice for host ", host.name);
        max_slots = parse_count(value, "max_slots", where);
      } else {
        KOLO_FAIL("kolorun: ", where, ": unknown hostfile key ", printable(key),
                  " (known: slots, max_slots)");
      }
    }
    if (max_slots && host.slots) {
      KOLO_CHECK(*max_slots >= *host.slots, "kolorun: ", where, ": max_slots=", *max_slots, " is below slots=",
                 *host.slots, " for host ", host.name);
    }
    merge_host(hosts, std::move(host), where);
  }
  KOLO_CHECK(!hosts.empty(), "kolorun: hostfile ", std::string(source), " lists no hosts");
  return hosts;
}

std::vector<HostSlots> parse_host_list(std::string_view text) {
  std::vector<HostSlots> hosts;
  size_t start = 0;
  int index = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view token = text.substr(start, end - start);
    start = end + 1;
    ++index;
    const std::string where = "-H entry " + std::to_string(index);
    KOLO_CHECK(!token.empty(), "kolorun: ", where, " of ", printable(text), " is empty");
    HostSlots host = parse_host_with_count(token, where);
    if (!host.slots) host.slots = 1;
    merge_host(hosts, std::move(host), where);
  }
  return hosts;
}

std::vector<HostSlots> resolve_slots(std::vector<HostSlots> hosts, int default_slots) {
  KOLO_CHECK(default_slots > 0, "kolorun: default slot count must be positive, got ", default_slots);
  for (auto& host : hosts) {
    if (!host.slots) host.slots = std::min(default_slots, kMaxSlotsPerHost);
  }
  return hosts;
}

std::string format_host_list(const std::vector<HostSlots>& hosts) {
  std::string out;
  for (const auto& host : hosts) {
    KOLO_CHECK(host.slots.has_value(), "kolorun: host ", host.name, " has no resolved slot count");
    if (!out.empty()) out += ',';
    out += host.name + ":" + std::to_string(*host.slots);
  }
  return out;
}

bool is_local_host(std::string_view name) {
  return name == "localhost" || name == "127.0.0.1" || name == "localhost.localdomain";
}

}  // namespace kolo::launch
