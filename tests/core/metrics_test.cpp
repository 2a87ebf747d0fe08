#include <gtest/gtest.h>

#include "core/metrics.hpp"

namespace patina::core {
namespace {

TEST(Metrics, renders_prometheus_text_format) {
  Metrics m;
  m.counter("req_total", "Requests", {{"route", "/v1/x"}, {"status", "200"}}).inc(3);
  m.counter("req_total", "Requests", {{"route", "/v1/x"}, {"status", "500"}}).inc();
  m.gauge("depth", "Queue depth").set(7);
  auto& h = m.histogram("lat_seconds", "Latency", {}, {0.1, 1});
  h.observe(0.05);
  h.observe(0.5);
  h.observe(5);
  std::string text = m.render();
  EXPECT_NE(text.find("# HELP req_total Requests\n# TYPE req_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("req_total{route=\"/v1/x\",status=\"200\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("req_total{route=\"/v1/x\",status=\"500\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE depth gauge\ndepth 7\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"1\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_sum 5.55\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_count 3\n"), std::string::npos);
}

TEST(Metrics, same_series_is_the_same_object_and_labels_are_escaped) {
  Metrics m;
  Counter& a = m.counter("c", "help", {{"k", "v"}});
  Counter& b = m.counter("c", "help", {{"k", "v"}});
  EXPECT_EQ(&a, &b);
  m.gauge("g", "help", {{"q", "a\"b\\c\nd"}}).set(1.5);
  EXPECT_NE(m.render().find("g{q=\"a\\\"b\\\\c\\nd\"} 1.5\n"), std::string::npos);
  EXPECT_THROW(m.gauge("c", "help"), std::logic_error);
}

}  // namespace
}  // namespace patina::core
