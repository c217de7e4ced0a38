#pragma once
/// The application's trace id, for the exemplars of the wait histogram.
///
/// Each contended wait that stallscope records in stallscope_wait_seconds may be kept as its
/// bucket's exemplar (OpenMetrics output only): the wait's duration and time, the name of the
/// task that waited and, when the application installs a provider, the trace id of the request
/// being served, so that a slow bucket in Grafana links to its trace.

#include <cstddef>
#include <span>

namespace stallscope {

/// The longest trace id kept: a W3C / OpenTelemetry trace id in lowercase hex is 32 characters.
inline constexpr std::size_t kMaxTraceIdLength = 32;

/// Writes the current trace id into `out` (printable ASCII, such as lowercase hex) and returns
/// its length; returns 0 when the calling thread serves no traced request now.
using TraceIdProvider = std::size_t (*)(std::span<char, kMaxTraceIdLength> out);

/// Installs `provider` (nullptr: none, the default). stallscope calls it on the waiting thread
/// once per contended wait it records as an exemplar, after the wait ended: never on an
/// uncontended acquisition. A provider that throws, returns more than kMaxTraceIdLength or
/// writes anything but printable ASCII gives that wait no trace id; the wait is recorded all the
/// same and the exception goes no further. Thread-safe; the provider may be called from several
/// threads at once.
void set_trace_id_provider(TraceIdProvider provider) noexcept;

/// The provider installed now (nullptr: none).
TraceIdProvider trace_id_provider() noexcept;

}  // namespace stallscope
