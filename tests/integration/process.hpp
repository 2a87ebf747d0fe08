#pragma once
// Helpers for tests that drive the real `patina` binary as a process:
// a scratch directory, a running agent whose stderr goes to a file, and
// one-shot CLI invocations. Every process started here is stopped by PID.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace patina::testing {

std::string patina_binary();

class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  void write(const std::string& name, const std::string& text) const;

 private:
  std::filesystem::path path_;
};

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs |argv| in |cwd| to completion (bounded by |timeout|); stdout and
// stderr are merged, both fields hold them.
RunResult run_command(const std::vector<std::string>& argv, const std::filesystem::path& cwd,
                      std::chrono::seconds timeout = std::chrono::seconds(30),
                      const std::vector<std::string>& env = {});
// Runs `patina args...` in |cwd| to completion (bounded by |timeout|).
RunResult run_patina(const std::vector<std::string>& args, const std::filesystem::path& cwd,
                     std::chrono::seconds timeout = std::chrono::seconds(30),
                     const std::vector<std::string>& env = {});

class Process {
 public:
  // Starts |argv| in |cwd| with stdout+stderr appended to |log_file|.
  Process(std::vector<std::string> argv, std::filesystem::path cwd, std::string log_file,
          std::vector<std::string> env = {});
  ~Process();  // SIGKILL if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  std::string log() const;
  // Polls the log until it contains |text|; false on timeout or exit.
  bool wait_for_log(const std::string& text, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  void signal(int sig);
  // Waits for exit; the exit code (128+signal when killed), or nullopt.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  bool running();

 private:
  pid_t pid_ = -1;
  std::string log_file_;
  std::optional<int> status_;
};

}  // namespace patina::testing
