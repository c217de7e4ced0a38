// The release check's channel warnings in-process: heavy payloads (ChannelOptions::size_of) and
// one channel carrying unrelated traffic (many task names sending on its data lane), each
// warning and passing on channels that tasks really send on.
#include <string>
#include <vector>

#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include "check/support.hpp"
#include "stallscope/channel.hpp"
#include "stallscope/task.hpp"
#include "support/poll.hpp"

namespace asio = boost::asio;
using Catch::Contains;
using stallscope::check::Verdict;
using namespace stallscope::testing;

namespace {

using Payload = std::string;

stallscope::ChannelOptions<Payload> sized(std::size_t capacity) {
  stallscope::ChannelOptions<Payload> o{.capacity = capacity};
  o.size_of = [](const Payload& p) { return p.size(); };
  return o;
}

// One task per name in `tasks`, each sending `items` payloads of `bytes` bytes on `ch`.
void send_from_tasks(stallscope::Channel<Payload>& ch, const std::vector<std::string>& tasks,
                     int items, std::size_t bytes) {
  asio::io_context io;
  for (const std::string& task : tasks) {
    stallscope::spawn(
        io.get_executor(), task,
        [&ch, items, bytes]() -> asio::awaitable<void> {
          for (int i = 0; i < items; ++i) (void)co_await ch.async_send(Payload(bytes, 'x'));
        },
        asio::detached);
  }
  io.run();
}

}  // namespace

TEST_CASE("heavy-payloads warns on large items, naming the channel and the bytes",
          "[check][warnings][payloads]") {
  const std::string name = unique_name("blobs");
  stallscope::Channel<Payload> ch(name, sized(64));
  CheckWindow w;
  send_from_tasks(ch, {unique_name("uploader")}, 4, 100 * 1024);  // 100 KiB each, kept queued
  // Check 4 lenient: building 100 KiB strings took over 1 ms a slice in an asan build on the
  // loaded CI machine, and only this warning's effect on the exit code is under test here.
  stallscope::check::Thresholds lenient;
  lenient.long_slice_seconds = 1.0;
  const auto report = w.report(lenient);
  INFO(stallscope::check::to_text(report));
  CHECK(result(report, "heavy-payloads").verdict == Verdict::kWarn);
  CHECK_THAT(evidence(report, "heavy-payloads"),
             Contains("channel `" + name + "`: 400 KiB queued at the window end") &&
                 Contains("100 KiB per item on average over 4 items"));
  CHECK(stallscope::check::exit_code(report) == 0);  // a warning, not a failure

  // The queued bytes alone warn too, with a per-item threshold above the items.
  stallscope::check::Thresholds t;
  t.channel_item_bytes = 1e9;
  t.channel_queued_bytes = 300 * 1024;
  CHECK(result(w.report(t), "heavy-payloads").verdict == Verdict::kWarn);
  t.channel_queued_bytes = 500 * 1024;
  CHECK(result(w.report(t), "heavy-payloads").verdict == Verdict::kPass);
  (void)ch.drain();
}

TEST_CASE("heavy-payloads passes on small items and says how many channels it measured",
          "[check][warnings][payloads]") {
  const std::string name = unique_name("small");
  stallscope::Channel<Payload> ch(name, sized(64));
  stallscope::Channel<Payload> unsized(unique_name("unsized"), 64);
  CheckWindow w;
  send_from_tasks(ch, {unique_name("small-sender")}, 10, 100);
  send_from_tasks(unsized, {unique_name("big-unmeasured")}, 2, 1024 * 1024);
  const auto report = w.report();
  INFO(stallscope::check::to_text(report));
  CHECK(result(report, "heavy-payloads").verdict == Verdict::kPass);
  CHECK_THAT(evidence(report, "heavy-payloads"), Contains("1 channel(s) measured payload bytes"));
  (void)ch.drain();
  (void)unsized.drain();
}

TEST_CASE("unrelated-traffic warns when many task names send on one channel",
          "[check][warnings][senders]") {
  const std::string name = unique_name("everything");
  stallscope::Channel<Payload> ch(name, sized(256));
  CheckWindow w;
  send_from_tasks(ch,
                  {unique_name("audit"), unique_name("metrics"), unique_name("email"),
                   unique_name("billing"), unique_name("audit-2")},
                  2, 8);
  const auto report = w.report();
  INFO(stallscope::check::to_text(report));
  CHECK(result(report, "unrelated-traffic").verdict == Verdict::kWarn);
  CHECK_THAT(evidence(report, "unrelated-traffic"),
             Contains("channel `" + name + "`: 5 distinct task names"));
  stallscope::check::Thresholds t;
  t.channel_sender_tasks = 6;
  CHECK(result(w.report(t), "unrelated-traffic").verdict == Verdict::kPass);
  (void)ch.drain();
}

TEST_CASE("unrelated-traffic passes when each kind of work has its own channel",
          "[check][warnings][senders]") {
  stallscope::Channel<Payload> audit(unique_name("audit-log"), sized(64));
  stallscope::Channel<Payload> mail(unique_name("mail-out"), sized(64));
  CheckWindow w;
  // Many tasks, but of two names per channel at most.
  send_from_tasks(audit, {"audit-writer", "audit-writer", "audit-flush"}, 3, 8);
  send_from_tasks(mail, {"mailer", "mailer"}, 3, 8);
  const auto report = w.report();
  INFO(stallscope::check::to_text(report));
  CHECK(result(report, "unrelated-traffic").verdict == Verdict::kPass);
  CHECK_THAT(evidence(report, "unrelated-traffic"), Contains("(most: 2)"));
  (void)audit.drain();
  (void)mail.drain();
}
