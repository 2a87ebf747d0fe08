#include "core/metrics.hpp"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace patina::core {

void Gauge::add(double d) {
  double cur = value_.load(std::memory_order_relaxed);
  while (!value_.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
  }
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<std::uint64_t>[bounds_.size() + 1]) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::observe(double v) {
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  double cur = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

std::vector<std::uint64_t> Histogram::cumulative_counts() const {
  std::vector<std::uint64_t> out(bounds_.size() + 1);
  std::uint64_t acc = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    acc += buckets_[i].load(std::memory_order_relaxed);
    out[i] = acc;
  }
  return out;
}

std::vector<double> latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

namespace {

std::string escape_label_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<long long>(v));
  return fmt::format("{}", v);
}

// Adds one label to an already rendered label set.
std::string with_label(const std::string& rendered, const std::string& name, const std::string& value) {
  std::string extra = fmt::format("{}=\"{}\"", name, escape_label_value(value));
  if (rendered.empty()) return "{" + extra + "}";
  return rendered.substr(0, rendered.size() - 1) + "," + extra + "}";
}

}  // namespace

std::string render_labels(const Labels& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (i) out += ",";
    out += fmt::format("{}=\"{}\"", labels[i].first, escape_label_value(labels[i].second));
  }
  return out + "}";
}

std::size_t Metrics::find_or_add(const std::string& name, Type type, const std::string& help, const Labels& labels,
                                 std::vector<double>* bounds) {
  auto [it, inserted] = families_.try_emplace(name, Family{type, help, {}});
  if (!inserted && it->second.type != type) {
    throw std::logic_error(fmt::format("metric {} registered with two types", name));
  }
  std::string key = render_labels(labels);
  auto s = it->second.series.find(key);
  if (s != it->second.series.end()) return s->second;
  std::size_t index = 0;
  switch (type) {
    case Type::counter: index = counters_.size(); counters_.emplace_back(); break;
    case Type::gauge: index = gauges_.size(); gauges_.emplace_back(); break;
    case Type::histogram: index = histograms_.size(); histograms_.emplace_back(*bounds); break;
  }
  it->second.series.emplace(key, index);
  return index;
}

Counter& Metrics::counter(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  return counters_[find_or_add(name, Type::counter, help, labels, nullptr)];
}

Gauge& Metrics::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  return gauges_[find_or_add(name, Type::gauge, help, labels, nullptr)];
}

Histogram& Metrics::histogram(const std::string& name, const std::string& help, const Labels& labels,
                              std::vector<double> bounds) {
  std::lock_guard lock(mu_);
  return histograms_[find_or_add(name, Type::histogram, help, labels, &bounds)];
}

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, fam] : families_) {
    const char* type = fam.type == Type::counter ? "counter" : fam.type == Type::gauge ? "gauge" : "histogram";
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, fam.help, name, type);
    for (const auto& [labels, index] : fam.series) {
      switch (fam.type) {
        case Type::counter:
          out += fmt::format("{}{} {}\n", name, labels, counters_[index].value());
          break;
        case Type::gauge:
          out += fmt::format("{}{} {}\n", name, labels, format_value(gauges_[index].value()));
          break;
        case Type::histogram: {
          const Histogram& h = histograms_[index];
          auto counts = h.cumulative_counts();
          auto bounds = h.bounds();
          for (std::size_t i = 0; i < bounds.size(); ++i) {
            out += fmt::format("{}_bucket{} {}\n", name, with_label(labels, "le", format_value(bounds[i])), counts[i]);
          }
          out += fmt::format("{}_bucket{} {}\n", name, with_label(labels, "le", "+Inf"), counts.back());
          out += fmt::format("{}_sum{} {}\n", name, labels, format_value(h.sum()));
          out += fmt::format("{}_count{} {}\n", name, labels, h.count());
          break;
        }
      }
    }
  }
  return out;
}

}  // namespace patina::core
