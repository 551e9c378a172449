// STUB until branch `svc` lands.
#include "server/options.h"

#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace peftd::server {

absl::StatusOr<ServerOptions> ParseServerOptions(int argc, char** argv) {
  ServerOptions o;
  std::map<std::string, std::string> kv;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) return absl::InvalidArgumentError("unexpected argument " + a);
    a = a.substr(2);
    const size_t eq = a.find('=');
    if (eq != std::string::npos) {
      kv[a.substr(0, eq)] = a.substr(eq + 1);
    } else if (i + 1 < argc) {
      kv[a] = argv[++i];
    } else {
      return absl::InvalidArgumentError("--" + a + ": needs a value");
    }
  }
  auto dur = [&](const char* k, absl::Duration* d) -> absl::Status {
    if (kv.count(k) && !absl::ParseDuration(kv[k], d)) {
      return absl::InvalidArgumentError(absl::StrCat("--", k, ": not a duration"));
    }
    return absl::OkStatus();
  };
  for (auto& [k, v] : kv) {
    if (k == "listen")
      o.listen = v;
    else if (k == "metrics-listen")
      o.metrics_listen = v;
    else if (k == "data-dir")
      o.data_dir = v;
    else if (k == "model-root")
      o.model_root = v;
    else if (k == "local-workers")
      (void)absl::SimpleAtoi(v, &o.local_workers);
    else if (k == "worker-binary")
      o.worker_binary = v;
    else if (k == "auth-token")
      o.auth_token = v;
    else if (k == "auth-token-file")
      o.auth_token_file = v;
    else if (k == "tls-cert")
      o.tls_cert = v;
    else if (k == "tls-key")
      o.tls_key = v;
    else if (k == "tls-client-ca")
      o.tls_client_ca = v;
    else if (k == "max-dataset-bytes")
      (void)absl::SimpleAtoi(v, &o.max_dataset_bytes);
    else if (k == "max-message-bytes")
      (void)absl::SimpleAtoi(v, &o.max_message_bytes);
    else if (k == "port-file")
      o.port_file = v;
    else if (k != "heartbeat-interval" && k != "lease-timeout" && k != "restart-grace")
      return absl::InvalidArgumentError("unknown flag --" + k);
  }
  if (auto st = dur("heartbeat-interval", &o.heartbeat_interval); !st.ok()) return st;
  if (auto st = dur("lease-timeout", &o.lease_timeout); !st.ok()) return st;
  if (auto st = dur("restart-grace", &o.restart_grace); !st.ok()) return st;
  if (o.model_root.empty()) o.model_root = o.data_dir + "/models";
  return o;
}

}  // namespace peftd::server
