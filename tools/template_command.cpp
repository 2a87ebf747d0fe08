#include "tools/template_command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "api/stream_client.hpp"
#include "tools/cli_data.hpp"
#include "tools/template_script.hpp"

extern char** environ;

namespace patina::tools {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto debounce = 100ms;        // changes close together make one render
constexpr auto file_check = 1s;         // how often the template file is looked at
// After a failed render: 1 s, doubling to 5 s (an agent restarting is back
// within a second or two; one that stays down is not hammered).
constexpr auto first_retry = 1s;
constexpr auto last_retry = 5s;

struct Spec {
  std::string src;
  std::string dst;
  std::string cmd;
};

// SRC:DST[:CMD]; the command is everything after the second colon.
Result<Spec> parse_spec(const std::string& arg) {
  auto a = arg.find(':');
  if (a == std::string::npos || a == 0) {
    return make_error(Errc::invalid_argument, fmt::format("template '{}' is not SRC:DST[:CMD]", arg));
  }
  auto b = arg.find(':', a + 1);
  Spec s;
  s.src = arg.substr(0, a);
  s.dst = b == std::string::npos ? arg.substr(a + 1) : arg.substr(a + 1, b - a - 1);
  if (b != std::string::npos) s.cmd = arg.substr(b + 1);
  if (s.dst.empty()) return make_error(Errc::invalid_argument, fmt::format("template '{}' has no destination", arg));
  return s;
}

// One line per event on stderr, with the time: the command runs for days.
void say(const std::string& message) { print_event("template", message); }

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::io, fmt::format("cannot read template {}: {}", path, std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string error_text(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (!ec && v.is_object()) {
    if (const auto* e = v.as_object().if_contains("error"); e && e->is_string()) return std::string(e->as_string());
  }
  return body.substr(0, 300);
}

// The sql(...) calls of one render. Each is a subscription; its stream
// stays open after the rows, so its next change event can wake the watcher.
class SubscriptionHost : public tpl::Host {
 public:
  explicit SubscriptionHost(const ApiTarget& api) : api_(api) {}

  Result<tpl::QueryResult> sql(const json::value& statement) override {
    auto s = std::make_unique<api::StreamClient>(api_.addr, "POST", "/v1/subscriptions", json::serialize(statement), 0,
                                                 std::chrono::seconds(10), api_.headers);
    if (s->status() == 0) return make_error(Errc::io, fmt::format("cannot reach the agent's API at {}", api_.addr));
    if (s->status() != 200) {
      return make_error(Errc::invalid_argument,
                        fmt::format("the agent refused the query ({}): {}", s->status(), error_text(s->rest(5s))));
    }
    tpl::QueryResult result;
    for (;;) {
      auto line = s->next_line(60s);
      if (!line) return make_error(Errc::io, "the agent's answer ended before all its rows came");
      boost::system::error_code ec;
      auto v = json::parse(*line, ec);
      if (ec || !v.is_object()) return make_error(Errc::protocol, "the agent sent something not JSON: " + line->substr(0, 200));
      const auto& o = v.as_object();
      if (const auto* cols = o.if_contains("columns"); cols && cols->is_array()) {
        for (const auto& c : cols->as_array()) {
          result.columns.push_back(c.is_string() ? std::string(c.as_string()) : json::serialize(c));
        }
      } else if (const auto* row = o.if_contains("row");
                 row && row->is_array() && row->as_array().size() == 2 && row->as_array()[1].is_array()) {
        const auto& cells = row->as_array()[1].as_array();
        result.rows.emplace_back(cells.begin(), cells.end());
      } else if (o.contains("eoq")) {
        break;
      } else if (const auto* e = o.if_contains("error")) {
        return make_error(Errc::sql, e->is_string() ? std::string(e->as_string()) : json::serialize(*e));
      }
    }
    watches_.push_back(std::move(s));
    return result;
  }

  std::string hostname() override {
    char buf[256] = {};
    ::gethostname(buf, sizeof buf - 1);
    return buf;
  }

  enum class Wake { change, ended, timeout };

  // Until a change event arrives on any subscription, one of them ends (the
  // agent restarted, the subscription was removed), or |until|.
  Wake wait(Clock::time_point until) {
    for (;;) {
      std::vector<pollfd> fds;
      for (auto& w : watches_) {
        while (auto line = w->next_line(0ms)) {
          if (auto wake = classify(*line)) return *wake;
        }
        if (w->ended() || w->fd() < 0) return Wake::ended;
        fds.push_back(pollfd{w->fd(), POLLIN, 0});
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
      if (left <= 0) return Wake::timeout;
      int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::min<long long>(left, 1000)));
      if (n <= 0) continue;
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        if (auto line = watches_[i]->next_line(1ms)) {
          if (auto wake = classify(*line)) return *wake;
        }
      }
    }
  }

 private:
  // A line of a subscription after its rows: a change wakes the watcher; an
  // error ends the stream (re-subscribe); anything else is ignored.
  static std::optional<Wake> classify(const std::string& line) {
    boost::system::error_code ec;
    auto v = json::parse(line, ec);
    if (ec || !v.is_object() || v.as_object().contains("error")) return Wake::ended;
    if (v.as_object().contains("change")) return Wake::change;
    return std::nullopt;
  }

  const ApiTarget& api_;
  std::vector<std::unique_ptr<api::StreamClient>> watches_;
};

// A temporary file beside |dst|, renamed over it: readers of |dst| see the
// old content or the new, never half of it. Keeps |dst|'s permissions.
Result<void> write_atomically(const std::string& dst, const std::string& content) {
  fs::path path(dst);
  std::error_code ec;
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
  mode_t mode = 0644;
  struct stat st{};
  if (::stat(dst.c_str(), &st) == 0) mode = st.st_mode & 07777;
  std::string tmp = fmt::format("{}.patina-tmp-{}", dst, ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return make_error(Errc::io, fmt::format("cannot write {}: {}", tmp, std::strerror(errno)));
  std::size_t done = 0;
  while (done < content.size()) {
    auto n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return make_error(Errc::io, fmt::format("cannot write {}: {}", tmp, std::strerror(err)));
    }
    done += static_cast<std::size_t>(n);
  }
  ::fchmod(fd, mode);
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return make_error(Errc::io, fmt::format("cannot write {}: {}", tmp, std::strerror(errno)));
  }
  if (::rename(tmp.c_str(), dst.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return make_error(Errc::io, fmt::format("cannot replace {}: {}", dst, std::strerror(err)));
  }
  return {};
}

// The command after a render, through the shell; its exit status is logged.
void run_command(const Spec& spec) {
  const char* argv[] = {"/bin/sh", "-c", spec.cmd.c_str(), nullptr};
  pid_t pid = 0;
  if (::posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ) != 0) {
    say(fmt::format("cannot run '{}' after rendering {}: {}", spec.cmd, spec.dst, std::strerror(errno)));
    return;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    say(fmt::format("'{}' after rendering {} exited with {}", spec.cmd, spec.dst,
                    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)));
  }
}

struct FileStamp {
  std::int64_t mtime_ns = 0;
  std::int64_t size = -1;
  bool operator==(const FileStamp&) const = default;
};

FileStamp stamp_of(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
          static_cast<std::int64_t>(st.st_size)};
}

// One template until it fails (--once) or forever: 0 or 1.
int run_one(const ApiTarget& api, const Spec& spec, bool once) {
  auto source = read_file(spec.src);
  if (!source) return cli_fail(source.error().message);
  auto compiled = tpl::Template::compile(*source, spec.src);
  if (!compiled) return cli_fail(compiled.error().message);
  tpl::Template tpl = std::move(*compiled);
  FileStamp stamp = stamp_of(spec.src);
  if (!once) say(fmt::format("watching {} and rendering it to {}", spec.src, spec.dst));
  std::chrono::seconds retry = first_retry;
  for (;;) {
    SubscriptionHost host(api);
    std::string out;
    auto rendered = tpl.render(host, out);
    bool ok = false;
    if (!rendered) {
      if (once) return cli_fail(fmt::format("cannot render {}: {}", spec.src, rendered.error().message));
      say(fmt::format("cannot render {} (retrying in {} s or on the next change): {}", spec.src, retry.count(),
                      rendered.error().message));
    } else if (auto written = write_atomically(spec.dst, out); !written) {
      if (once) return cli_fail(written.error().message);
      say(written.error().message);
    } else {
      ok = true;
      if (!once) say(fmt::format("rendered {} to {} ({} bytes)", spec.src, spec.dst, out.size()));
      if (!spec.cmd.empty()) run_command(spec);
    }
    if (once) return 0;

    // Until a change (then the changes of the next 100 ms with it), a
    // subscription lost, an edited template, or the retry of a failure.
    const auto retry_at = ok ? Clock::time_point::max() : Clock::now() + retry;
    retry = ok ? first_retry : std::min<std::chrono::seconds>(retry * 2, last_retry);
    for (;;) {
      auto wake = host.wait(std::min(retry_at, Clock::now() + file_check));
      if (wake == SubscriptionHost::Wake::change) {
        auto until = Clock::now() + debounce;
        while (host.wait(until) == SubscriptionHost::Wake::change) {
        }
        break;
      }
      if (wake == SubscriptionHost::Wake::ended) {
        say(fmt::format("a subscription of {} ended; subscribing again", spec.src));
        std::this_thread::sleep_for(1s);
        break;
      }
      if (auto now = stamp_of(spec.src); !(now == stamp)) {
        stamp = now;
        auto text = read_file(spec.src);
        if (text && *text != *source) {
          auto again = tpl::Template::compile(*text, spec.src);
          if (!again) {
            say(fmt::format("{} changed but does not compile; keeping the last version: {}", spec.src,
                            again.error().message));
          } else {
            say(fmt::format("{} changed; rendering it again", spec.src));
            tpl = std::move(*again);
            source = std::move(text);
            break;
          }
        }
      }
      if (Clock::now() >= retry_at) break;
    }
  }
}

}  // namespace

int cmd_template(const GlobalOptions& g, const std::vector<std::string>& specs, bool once) {
  auto api = api_target(g);
  if (!api) return cli_fail(api.error().message);
  std::vector<Spec> parsed;
  for (const auto& s : specs) {
    auto spec = parse_spec(s);
    if (!spec) return cli_fail(spec.error().message);
    parsed.push_back(std::move(*spec));
  }
  if (parsed.size() == 1) return run_one(*api, parsed.front(), once);
  std::vector<int> codes(parsed.size(), 0);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < parsed.size(); ++i) {
    threads.emplace_back([&, i] { codes[i] = run_one(*api, parsed[i], once); });
  }
  for (auto& t : threads) t.join();
  return *std::max_element(codes.begin(), codes.end());
}

}  // namespace patina::tools
