// The README's trace-hook snippet ("### OpenMetrics and exemplars"), compiled and run against a
// stand-in with the OpenTelemetry C++ API's signatures (Debian 12 packages no opentelemetry-cpp):
// Tracer::GetCurrentSpan(), Span::GetContext(), SpanContext::IsValid() and trace_id(),
// TraceId::ToLowerBase16(nostd::span<char, 32>). A test keeps the snippet equal to the README.
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include <catch2/catch.hpp>

#include "stallscope/trace.hpp"
#include "support/readme.hpp"

namespace opentelemetry {
namespace nostd {
template <class T, std::size_t N = std::dynamic_extent>
using span = std::span<T, N>;  // what the API's nostd::span is when built against C++20
template <class T>
using shared_ptr = std::shared_ptr<T>;
}  // namespace nostd
namespace trace {
class TraceId {
 public:
  explicit TraceId(std::array<std::uint8_t, 16> id) : id_(id) {}
  void ToLowerBase16(nostd::span<char, 32> buffer) const noexcept {
    constexpr char kHex[] = "0123456789abcdef";
    for (std::size_t i = 0; i < 16; ++i) {
      buffer[2 * i] = kHex[id_[i] >> 4];
      buffer[2 * i + 1] = kHex[id_[i] & 15];
    }
  }
  bool IsValid() const noexcept { return id_ != std::array<std::uint8_t, 16>{}; }

 private:
  std::array<std::uint8_t, 16> id_;
};
class SpanContext {
 public:
  explicit SpanContext(TraceId id) : id_(id) {}
  bool IsValid() const noexcept { return id_.IsValid(); }
  const TraceId& trace_id() const noexcept { return id_; }

 private:
  TraceId id_;
};
class Span {
 public:
  explicit Span(SpanContext c) : c_(c) {}
  SpanContext GetContext() const noexcept { return c_; }

 private:
  SpanContext c_;
};
// The span active on this thread (what OpenTelemetry's runtime context holds).
thread_local nostd::shared_ptr<Span> tls_current = std::make_shared<Span>(SpanContext(TraceId({})));
class Tracer {
 public:
  static nostd::shared_ptr<Span> GetCurrentSpan() noexcept { return tls_current; }
};
}  // namespace trace
}  // namespace opentelemetry

namespace {

void install() {
  // README:trace:begin
  stallscope::set_trace_id_provider([](std::span<char, stallscope::kMaxTraceIdLength> out) {
    const auto context = opentelemetry::trace::Tracer::GetCurrentSpan()->GetContext();
    if (!context.IsValid()) return std::size_t{0};  // no traced request on this thread now
    context.trace_id().ToLowerBase16(opentelemetry::nostd::span<char, 32>(out.data(), 32));
    return std::size_t{32};  // 32 lowercase hex digits written
  });
  // README:trace:end
}

}  // namespace

TEST_CASE("the README's trace id provider reads OpenTelemetry's current span",
          "[openmetrics][readme]") {
  install();
  const stallscope::TraceIdProvider provider = stallscope::trace_id_provider();
  REQUIRE(provider != nullptr);
  char buf[stallscope::kMaxTraceIdLength];
  const std::span<char, stallscope::kMaxTraceIdLength> out(buf);
  CHECK(provider(out) == 0);  // no span: no trace id
  std::array<std::uint8_t, 16> id{};
  id[0] = 0x4b;
  id[15] = 0x36;
  opentelemetry::trace::tls_current = std::make_shared<opentelemetry::trace::Span>(
      opentelemetry::trace::SpanContext(opentelemetry::trace::TraceId(id)));
  REQUIRE(provider(out) == 32);
  CHECK(std::string(buf, 32) == "4b000000000000000000000000000036");
  stallscope::set_trace_id_provider(nullptr);
}

TEST_CASE("the README's trace snippet is the one compiled here", "[openmetrics][readme]") {
  using stallscope::testing::marked;
  using stallscope::testing::read_file;
  using stallscope::testing::readme_block;
  const std::string readme = read_file(STALLSCOPE_README_PATH);
  const std::string self = read_file(STALLSCOPE_THIS_FILE);
  CHECK(readme_block(readme, "### OpenMetrics and exemplars\n", 0) == marked(self, "trace"));
}
