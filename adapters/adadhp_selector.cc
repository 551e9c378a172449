#include "adapters/adadhp_selector.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "adapters/importance_ema.h"

namespace peftd::adapters {

absl::Status ValidateSchedule(const AdaDhpSchedule& s, int64_t num_modules) {
  auto bad = [](const char* field, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("adadhp.", field, ": ", why));
  };
  if (s.target_num < 0 || s.target_num > num_modules) {
    return bad("target_num",
               absl::StrCat("must be in [0, ", num_modules, "] (the adapted modules)"));
  }
  if (s.tinit < 0) return bad("tinit", "must be >= 0");
  if (s.tfinal <= s.tinit) return bad("tfinal", absl::StrCat("must be > tinit (", s.tinit, ")"));
  if (s.delta_t < 1) return bad("delta_t", "must be >= 1");
  if (!(s.beta1 > 0 && s.beta1 < 1)) return bad("beta1", "must be in (0, 1)");
  if (!(s.beta2 > 0 && s.beta2 < 1)) return bad("beta2", "must be in (0, 1)");
  return absl::OkStatus();
}

ModuleBudget ModuleBudgetAt(const AdaDhpSchedule& s, int64_t n_tot, int64_t t) {
  if (t <= s.tinit) return {n_tot, false};
  if (t > s.tfinal) return {s.target_num, true};
  const double c = static_cast<double>(s.tfinal - t) / static_cast<double>(s.tfinal - s.tinit);
  const auto budget = static_cast<int64_t>(std::floor(
      static_cast<double>(n_tot - s.target_num) * c * c * c + static_cast<double>(s.target_num)));
  return {budget, t % s.delta_t == 0};
}

AdaDhpSelector::AdaDhpSelector(AdaDhpSchedule schedule,
                               std::vector<std::pair<std::string, AdaDhpAdapter*>> modules)
    : schedule_(schedule), modules_(std::move(modules)) {
  for (auto& [name, m] : modules_) {
    emas_.push_back({Ema{torch::zeros_like(m->adadhp_l), torch::zeros_like(m->adadhp_l)},
                     Ema{torch::zeros_like(m->adadhp_r), torch::zeros_like(m->adadhp_r)}});
  }
}

void AdaDhpSelector::Step(int64_t t) {
  if (t < schedule_.tfinal) {
    torch::NoGradGuard no_grad;
    const double b1 = schedule_.beta1, b2 = schedule_.beta2;
    for (size_t k = 0; k < modules_.size(); ++k) {
      AdaDhpAdapter* m = modules_[k].second;
      if (m->frozen()) continue;
      const torch::Tensor* params[2] = {&m->adadhp_l, &m->adadhp_r};
      for (int i = 0; i < 2; ++i) {
        const torch::Tensor& grad = params[i]->grad();
        if (!grad.defined()) continue;
        UpdateImportanceEma(*params[i], grad, emas_[k][i].ipt, emas_[k][i].unc, b1, b2);
      }
    }
  }
  const ModuleBudget b = ModuleBudgetAt(schedule_, static_cast<int64_t>(modules_.size()), t);
  if (b.prune) PruneTo(b.budget);
}

std::vector<double> AdaDhpSelector::ModuleScores() const {
  std::vector<double> out;
  for (size_t k = 0; k < modules_.size(); ++k) {
    torch::Tensor all = torch::cat({(emas_[k][0].ipt * emas_[k][0].unc).view(-1),
                                    (emas_[k][1].ipt * emas_[k][1].unc).view(-1)});
    out.push_back(all.mean().item<double>());
  }
  return out;
}

int64_t AdaDhpSelector::ActiveModules() const {
  return std::count_if(modules_.begin(), modules_.end(),
                       [](const auto& m) { return !m.second->frozen(); });
}

void AdaDhpSelector::PruneTo(int64_t budget) {
  int64_t excess = ActiveModules() - budget;
  if (excess <= 0) return;
  const std::vector<double> scores = ModuleScores();
  std::vector<size_t> order(modules_.size());
  std::iota(order.begin(), order.end(), 0);
  // Lowest score first; ties broken by module order so runs are deterministic.
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  for (size_t i : order) {
    if (excess == 0) break;
    if (modules_[i].second->frozen()) continue;
    modules_[i].second->Freeze();
    --excess;
  }
}

std::map<std::string, torch::Tensor> AdaDhpSelector::StateDict() const {
  std::map<std::string, torch::Tensor> out;
  for (size_t k = 0; k < modules_.size(); ++k) {
    const std::string& name = modules_[k].first;
    out[name + ".l.ipt"] = emas_[k][0].ipt;
    out[name + ".l.unc"] = emas_[k][0].unc;
    out[name + ".r.ipt"] = emas_[k][1].ipt;
    out[name + ".r.unc"] = emas_[k][1].unc;
    out[name + ".frozen"] = torch::tensor({modules_[k].second->frozen() ? 1 : 0}, torch::kInt64);
  }
  return out;
}

absl::Status AdaDhpSelector::LoadStateDict(const std::map<std::string, torch::Tensor>& state) {
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < modules_.size(); ++k) {
    const std::string& name = modules_[k].first;
    const std::pair<std::string, torch::Tensor*> items[] = {{name + ".l.ipt", &emas_[k][0].ipt},
                                                            {name + ".l.unc", &emas_[k][0].unc},
                                                            {name + ".r.ipt", &emas_[k][1].ipt},
                                                            {name + ".r.unc", &emas_[k][1].unc}};
    for (const auto& [key, dst] : items) {
      auto it = state.find(key);
      if (it == state.end())
        return absl::InvalidArgumentError(absl::StrCat("adadhp state: missing ", key));
      dst->copy_(it->second);
    }
    auto it = state.find(name + ".frozen");
    if (it == state.end())
      return absl::InvalidArgumentError(absl::StrCat("adadhp state: missing ", name, ".frozen"));
    if (it->second.item<int64_t>() != 0 && !modules_[k].second->frozen())
      modules_[k].second->Freeze();
  }
  return absl::OkStatus();
}

}  // namespace peftd::adapters
