// STUB until branch `svc` lands.
#include "server/metrics.h"

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include "absl/strings/str_cat.h"

namespace peftd::server {

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {}
Metrics::~Metrics() = default;

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& addr,
                                                                    Metrics& metrics) {
  auto server = std::make_unique<MetricsServer>();
  try {
    server->exposer_ = std::make_unique<prometheus::Exposer>(addr);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("metrics on ", addr, ": ", e.what()));
  }
  server->exposer_->RegisterCollectable(metrics.registry());
  auto ports = server->exposer_->GetListeningPorts();
  server->port_ = ports.empty() ? 0 : ports[0];
  return server;
}

MetricsServer::~MetricsServer() = default;

}  // namespace peftd::server
