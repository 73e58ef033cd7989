// route_load: drives bandit_router.v1.Router (Route, or Route then Reward) from outside the
// Python processes.
//
// Why C++: a load generator on the same two cores as the servers takes CPU from them; the
// Python client spends ~150 us of CPU per call and Node's grpc-js ~190 us, as much as the
// server itself, so under overload the generator, not the server, set the latencies. gRPC's
// C++ completion queue costs a few microseconds per call, and reads each call's status
// (RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED...), which an HTTP/2 tool such as h2load cannot.
//
// One thread issues and completes every call (AsyncNext with the next issue time as its
// deadline), so the generator uses at most one core and usually a small part of it.
//
// Modes:
//   open loop (--rate R): call i is due at start + i/R; its latency counts from that due
//     time, so a stall delays the calls behind it and shows (no coordinated omission).
//   closed loop (--rate 0 --concurrency C): C calls in flight; a refused call waits
//     --refusal-pause-ms before its caller tries again, as a polite client would.
//   pairs (--pairs 1): each call is a Route and, once it is answered OK, a Reward of its
//     decision id (value 1 for every third pair, else 0), as every real caller pairs them;
//     the latency runs from the due time to the Reward's answer, and a pair's status is the
//     Route's if that failed, else the Reward's. --rate is then pairs per second.
//   --connections N: N HTTP/2 connections (distinct channels), calls spread round-robin, so
//     the kernel can balance them over `serve --workers` processes (SO_REUSEPORT).
// Prints one JSON object: calls per status code, latency quantiles of OK calls and of all
// calls (microseconds), the run's seconds and the generator's own CPU seconds.

#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bandit_router/v1/router.grpc.pb.h"

using Clock = std::chrono::steady_clock;  // latencies and schedules
using WallClock = std::chrono::system_clock;  // what gRPC's deadlines take

WallClock::time_point ToWall(Clock::time_point when) {
  return WallClock::now() +
         std::chrono::duration_cast<WallClock::duration>(when - Clock::now());
}

namespace {

struct Options {
  std::string target = "127.0.0.1:50051";
  std::string experiment = "bench";
  double rate = 0;  // calls/s; 0 means closed loop
  int concurrency = 64;
  double seconds = 5;
  double warmup_seconds = 0.5;
  int deadline_ms = 100;
  int refusal_pause_ms = 10;
  bool pairs = false;
  int connections = 1;
};

struct Call {
  grpc::ClientContext context;
  bandit_router::v1::RouteResponse response;
  grpc::Status status;
  Clock::time_point due;
  bool counted = true;
  long index = 0;
  int channel = 0;
  std::unique_ptr<grpc::ClientAsyncResponseReader<bandit_router::v1::RouteResponse>> reader;
  // Pairs: the Reward that follows an OK Route (a context serves one call only).
  bool rewarding = false;
  std::unique_ptr<grpc::ClientContext> reward_context;
  bandit_router::v1::RewardResponse reward_response;
  std::unique_ptr<grpc::ClientAsyncResponseReader<bandit_router::v1::RewardResponse>>
      reward_reader;
};

double Flag(int argc, char** argv, const std::string& name, double fallback, std::string* text) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (name == argv[i]) {
      if (text != nullptr) *text = argv[i + 1];
      return std::atof(argv[i + 1]);
    }
  }
  return fallback;
}

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

std::string Quantiles(std::vector<double>* values) {
  if (values->empty()) return "null";
  std::sort(values->begin(), values->end());
  auto at = [&](double q) {
    size_t index = std::min(values->size() - 1, static_cast<size_t>(q * values->size()));
    return (*values)[index];
  };
  char text[256];
  std::snprintf(text, sizeof text,
                "{\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f}",
                at(0.5), at(0.9), at(0.99), at(0.999), values->back());
  return text;
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::OK: return "OK";
    case grpc::CANCELLED: return "CANCELLED";
    case grpc::UNKNOWN: return "UNKNOWN";
    case grpc::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::NOT_FOUND: return "NOT_FOUND";
    case grpc::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::INTERNAL: return "INTERNAL";
    default: return "OTHER";
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  Flag(argc, argv, "--target", 0, &options.target);
  Flag(argc, argv, "--experiment", 0, &options.experiment);
  options.rate = Flag(argc, argv, "--rate", options.rate, nullptr);
  options.concurrency = static_cast<int>(Flag(argc, argv, "--concurrency", 64, nullptr));
  options.seconds = Flag(argc, argv, "--seconds", options.seconds, nullptr);
  options.warmup_seconds = Flag(argc, argv, "--warmup-seconds", options.warmup_seconds, nullptr);
  options.deadline_ms = static_cast<int>(Flag(argc, argv, "--deadline-ms", 100, nullptr));
  options.refusal_pause_ms = static_cast<int>(Flag(argc, argv, "--refusal-pause-ms", 10, nullptr));
  options.pairs = Flag(argc, argv, "--pairs", 0, nullptr) != 0;
  options.connections = std::max(1, static_cast<int>(Flag(argc, argv, "--connections", 1, nullptr)));

  std::vector<std::unique_ptr<bandit_router::v1::Router::Stub>> stubs;
  for (int i = 0; i < options.connections; ++i) {
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);  // every refusal is counted, none retried
    // Channels share connections through gRPC's global subchannel pool: a local pool each.
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel = grpc::CreateCustomChannel(options.target, grpc::InsecureChannelCredentials(),
                                             arguments);
    if (!channel->WaitForConnected(WallClock::now() + std::chrono::seconds(10))) {
      std::fprintf(stderr, "error: %s did not accept a connection\n", options.target.c_str());
      return 2;
    }
    stubs.push_back(bandit_router::v1::Router::NewStub(channel));
  }
  bandit_router::v1::RouteRequest request;
  request.set_experiment(options.experiment);
  grpc::CompletionQueue queue;

  const auto start = Clock::now();
  const auto measure_from = start + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(options.warmup_seconds));
  const auto stop = measure_from + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(options.seconds));
  std::map<std::string, long> codes;
  std::vector<double> ok_us, all_us;
  long in_flight = 0;
  double cpu_at_measure = -1;

  long next_index = 0;
  auto issue = [&](Clock::time_point due) {
    auto* call = new Call;
    call->due = due;
    call->counted = due >= measure_from && due < stop;
    call->index = next_index++;
    call->channel = static_cast<int>(call->index % options.connections);
    call->context.set_deadline(WallClock::now() + std::chrono::milliseconds(options.deadline_ms));
    call->reader = stubs[call->channel]->PrepareAsyncRoute(&call->context, request, &queue);
    call->reader->StartCall();
    call->reader->Finish(&call->response, &call->status, call);
    ++in_flight;
  };
  // Pairs: the Reward of an OK Route, on the same connection; the call stays in flight.
  auto reward = [&](Call* call) {
    bandit_router::v1::RewardRequest reward_request;
    reward_request.set_decision_id(call->response.decision_id());
    reward_request.set_value(call->index % 3 == 0 ? 1.0 : 0.0);
    call->rewarding = true;
    call->reward_context = std::make_unique<grpc::ClientContext>();
    call->reward_context->set_deadline(WallClock::now() +
                                       std::chrono::milliseconds(options.deadline_ms));
    call->reward_reader =
        stubs[call->channel]->PrepareAsyncReward(call->reward_context.get(), reward_request, &queue);
    call->reward_reader->StartCall();
    call->reward_reader->Finish(&call->reward_response, &call->status, call);
  };

  // Closed loop: callers waiting out a refusal pause, by the time they may call again.
  std::vector<Clock::time_point> paused;
  long issued = 0;
  const auto interval = options.rate > 0 ? std::chrono::duration<double>(1.0 / options.rate)
                                         : std::chrono::duration<double>(0);
  auto due_of = [&](long index) {
    return start + std::chrono::duration_cast<Clock::duration>(interval * index);
  };
  if (options.rate <= 0) {
    for (int i = 0; i < options.concurrency; ++i) issue(Clock::now());
  }
  while (true) {
    auto now = Clock::now();
    if (cpu_at_measure < 0 && now >= measure_from) cpu_at_measure = CpuSeconds();
    if (options.rate > 0) {
      while (due_of(issued) <= now && due_of(issued) < stop) issue(due_of(issued++));
    } else {
      std::sort(paused.begin(), paused.end());
      size_t ready = 0;
      while (ready < paused.size() && paused[ready] <= now) ++ready;
      for (size_t i = 0; i < ready; ++i) {
        if (now < stop) issue(now);
      }
      paused.erase(paused.begin(), paused.begin() + ready);
    }
    if (now >= stop && in_flight == 0) break;
    Clock::time_point wake = now + std::chrono::milliseconds(5);
    if (options.rate > 0 && due_of(issued) < stop) wake = std::min(wake, due_of(issued));
    if (!paused.empty()) wake = std::min(wake, *std::min_element(paused.begin(), paused.end()));
    void* tag = nullptr;
    bool ok = false;
    auto event = queue.AsyncNext(&tag, &ok, ToWall(wake));
    if (event != grpc::CompletionQueue::GOT_EVENT) continue;
    auto* answered = static_cast<Call*>(tag);
    if (options.pairs && !answered->rewarding && answered->status.ok()) {
      reward(answered);
      continue;
    }
    std::unique_ptr<Call> call(answered);
    --in_flight;
    auto done = Clock::now();
    double micros = std::chrono::duration<double, std::micro>(done - call->due).count();
    if (call->counted) {
      codes[CodeName(call->status.error_code())] += 1;
      all_us.push_back(micros);
      if (call->status.ok()) ok_us.push_back(micros);
    }
    if (options.rate <= 0 && done < stop) {
      auto code = call->status.error_code();
      if (code == grpc::RESOURCE_EXHAUSTED || code == grpc::CANCELLED) {
        paused.push_back(done + std::chrono::milliseconds(options.refusal_pause_ms));
      } else {
        issue(done);
      }
    }
  }
  double cpu = CpuSeconds() - std::max(0.0, cpu_at_measure);
  std::printf("{\"seconds\": %.3f, \"cpu_seconds\": %.3f, \"codes\": {", options.seconds, cpu);
  bool first = true;
  for (const auto& [name, count] : codes) {
    std::printf("%s\"%s\": %ld", first ? "" : ", ", name.c_str(), count);
    first = false;
  }
  std::printf("}, \"ok_us\": %s, \"all_us\": %s}\n", Quantiles(&ok_us).c_str(),
              Quantiles(&all_us).c_str());
  return 0;
}
