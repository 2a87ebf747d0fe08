#include "tests/integration/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace patina::testing {

std::string patina_binary() {
  const char* b = std::getenv("PATINA_BINARY");
  if (b != nullptr && *b != '\0') return b;
  return PATINA_DEFAULT_BINARY;
}

ScratchDir::ScratchDir() {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("patina-it-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void ScratchDir::write(const std::string& name, const std::string& text) const {
  std::ofstream out(path_ / name);
  out << text;
}

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

pid_t spawn(const std::vector<std::string>& argv, const std::filesystem::path& cwd, const std::string& out_file,
            const std::string& err_file, const std::vector<std::string>& env) {
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    if (::chdir(cwd.c_str()) != 0) _exit(127);
    int out = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int err = err_file == out_file ? out : ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || err < 0) _exit(127);
    ::dup2(out, 1);
    ::dup2(err, 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());  // PATH lookup for bare names (serf, curl)
    _exit(127);
  }
  return pid;
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

RunResult run_patina(const std::vector<std::string>& args, const std::filesystem::path& cwd,
                     std::chrono::seconds timeout, const std::vector<std::string>& env) {
  std::vector<std::string> argv{patina_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, cwd, timeout, env);
}

RunResult run_command(const std::vector<std::string>& argv, const std::filesystem::path& cwd,
                      std::chrono::seconds timeout, const std::vector<std::string>& env) {
  static int counter = 0;
  std::string base = (cwd / ("cli-" + std::to_string(++counter))).string();
  Process p(argv, cwd, base + ".out", env);
  RunResult r;
  auto code = p.wait_exit(timeout);
  r.exit_code = code.value_or(-1);
  std::string all = slurp(base + ".out");
  // Process merges the streams; keep both views for simple assertions.
  r.out = all;
  r.err = all;
  return r;
}

Process::Process(std::vector<std::string> argv, std::filesystem::path cwd, std::string log_file,
                 std::vector<std::string> env)
    : log_file_(std::move(log_file)) {
  pid_ = spawn(argv, cwd, log_file_, log_file_, env);
}

Process::~Process() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait_exit(std::chrono::seconds(10));
  }
}

std::string Process::log() const { return slurp(log_file_); }

bool Process::running() {
  if (status_) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    status_ = decode_status(status);
    return false;
  }
  return true;
}

bool Process::wait_for_log(const std::string& text, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (log().find(text) != std::string::npos) return true;
    if (!running()) return log().find(text) != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

void Process::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

std::optional<int> Process::wait_exit(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) return status_;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::nullopt;
}

}  // namespace patina::testing
