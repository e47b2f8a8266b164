// Environment snapshot, PATH search and execve for kolorun.
#include "launch/exec.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/util/error.h"
#include "launch/topology.h"

extern char** environ;

namespace kolo::launch {
namespace {

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

}  // namespace

std::map<std::string, std::string> current_environment() {
  std::map<std::string, std::string> vars;
  for (char** entry = environ; entry && *entry; ++entry) {
    const std::string text(*entry);
    const size_t eq = text.find('=');
    if (eq != std::string::npos && eq > 0) vars.emplace(text.substr(0, eq), text.substr(eq + 1));
  }
  return vars;
}

std::optional<std::string> find_executable(const std::string& name, const std::string& path_var) {
  if (name.empty()) return std::nullopt;
  if (name.find('/') != std::string::npos) {
    if (is_executable_file(name)) return name;
    return std::nullopt;
  }
  size_t start = 0;
  while (start <= path_var.size()) {
    size_t end = path_var.find(':', start);
    if (end == std::string::npos) end = path_var.size();
    // An empty PATH entry means the current directory, as for execvp.
    const std::string dir = end > start ? path_var.substr(start, end - start) : ".";
    const std::string candidate = dir + "/" + name;
    if (is_executable_file(candidate)) return candidate;
    start = end + 1;
  }
  return std::nullopt;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  KOLO_CHECK(in.good(), "kolorun: cannot read ", path, ": ", std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

LaunchEnvironment local_launch_environment() {
  LaunchEnvironment env;
  env.vars = current_environment();
  env.uid = ::getuid();
  env.local = detect_local_topology();
  const auto path = env.vars.count("PATH") ? env.vars.at("PATH") : std::string("/usr/local/bin:/usr/bin:/bin");
  env.find_executable = [path](const std::string& name) { return find_executable(name, path); };
  env.read_file = read_text_file;
  return env;
}

void exec_plan(const LaunchPlan& plan) {
  KOLO_CHECK(!plan.argv.empty(), "kolorun: empty command");
  auto vars = current_environment();
  for (const auto& [name, value] : plan.env) vars[name] = value;
  std::vector<std::string> env_strings;
  for (const auto& [name, value] : vars) env_strings.push_back(name + "=" + value);
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = plan.argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  ::execve(argv[0], argv.data(), envp.data());
  KOLO_FAIL("kolorun: cannot execute ", plan.argv[0], ": ", std::strerror(errno));
}

}  // namespace kolo::launch
