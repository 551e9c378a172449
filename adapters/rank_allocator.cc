#include "adapters/rank_allocator.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "adapters/cpu_gemm.h"
#include "adapters/importance_ema.h"
#include "adapters/orthogonality.h"

namespace peftd::adapters {

absl::Status ValidateSchedule(const AdaLoraSchedule& s) {
  auto bad = [](const char* field, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("adalora.", field, ": ", why));
  };
  if (s.init_r < 1) return bad("init_r", "must be >= 1");
  if (s.target_r < 0 || s.target_r > s.init_r)
    return bad("target_r", absl::StrCat("must be in [0, init_r = ", s.init_r, "]"));
  if (s.delta_t < 1) return bad("delta_t", "must be >= 1");
  if (s.tinit < 0) return bad("tinit", "must be >= 0");
  if (s.tfinal < 0) return bad("tfinal", "must be >= 0");
  if (s.total_step < 1) return bad("total_step", "must be >= 1");
  if (s.tinit >= s.total_step - s.tfinal) {
    return bad("tinit", absl::StrCat("tinit (", s.tinit, ") must be < total_step - tfinal (",
                                     s.total_step - s.tfinal, "): the budget could never shrink"));
  }
  if (!(s.beta1 > 0 && s.beta1 < 1)) return bad("beta1", "must be in (0, 1)");
  if (!(s.beta2 > 0 && s.beta2 < 1)) return bad("beta2", "must be in (0, 1)");
  return absl::OkStatus();
}

Budget BudgetAt(const AdaLoraSchedule& s, int64_t num_modules, int64_t step) {
  // PEFT's budget_schedule, `step` being its global_step.
  const int64_t init_bgt = s.init_r * num_modules;
  const int64_t target_bgt = s.target_r * num_modules;
  if (step <= s.tinit) return {init_bgt, false};
  if (step > s.total_step - s.tfinal) return {target_bgt, true};
  const double c = 1.0 - static_cast<double>(step - s.tinit) /
                             static_cast<double>(s.total_step - s.tfinal - s.tinit);
  const auto budget = static_cast<int64_t>(std::floor(
      static_cast<double>(init_bgt - target_bgt) * c * c * c + static_cast<double>(target_bgt)));
  return {budget, step % s.delta_t == 0};
}

RankAllocator::RankAllocator(AdaLoraSchedule schedule,
                             std::vector<std::pair<std::string, AdaLoraAdapter*>> modules)
    : schedule_(schedule), modules_(std::move(modules)) {
  for (auto& [name, m] : modules_) {
    std::array<Ema, 3> e;
    const torch::Tensor* params[3] = {&m->lora_A, &m->lora_E, &m->lora_B};
    for (int i = 0; i < 3; ++i) {
      e[i].ipt = torch::zeros_like(*params[i]);
      e[i].unc = torch::zeros_like(*params[i]);
    }
    emas_.push_back(e);
  }
}

void RankAllocator::UpdateImportance() {
  torch::NoGradGuard no_grad;
  const double b1 = schedule_.beta1, b2 = schedule_.beta2;
  for (size_t k = 0; k < modules_.size(); ++k) {
    AdaLoraAdapter* m = modules_[k].second;
    const torch::Tensor* params[3] = {&m->lora_A, &m->lora_E, &m->lora_B};
    for (int i = 0; i < 3; ++i) {
      const torch::Tensor& grad = params[i]->grad();
      if (!grad.defined()) continue;
      UpdateImportanceEma(*params[i], grad, emas_[k][i].ipt, emas_[k][i].unc, b1, b2);
    }
  }
}

std::vector<std::vector<double>> RankAllocator::ScoreLists() const {
  std::vector<std::vector<double>> out;
  for (size_t k = 0; k < modules_.size(); ++k) {
    const auto& e = emas_[k];
    const int64_t rank = e[1].ipt.numel();
    bool loop = true;
    for (const Ema& x : e) {
      loop = loop && GemmCovers(x.ipt) && x.ipt.is_contiguous() && x.unc.is_contiguous() &&
             x.unc.scalar_type() == x.ipt.scalar_type() &&
             x.ipt.scalar_type() == e[0].ipt.scalar_type();
    }
    std::vector<double> s(static_cast<size_t>(rank), 0.0);
    if (!loop) {
      torch::Tensor t = (Score(e[1]).view(-1) + Score(e[0]).mean(1) + Score(e[2]).mean(0))
                            .to(torch::kCPU, torch::kDouble);
      for (int64_t i = 0; i < rank; ++i) s[i] = t[i].item<double>();
      out.push_back(std::move(s));
      continue;
    }
    // S[i] = score(E)[i] + mean_j score(A)[i, j] + mean_o score(B)[o, i], score = Ī·Ū.
    AT_DISPATCH_FLOATING_TYPES(e[0].ipt.scalar_type(), "triplet_scores", [&] {
      using T = scalar_t;
      const T *ai = e[0].ipt.data_ptr<T>(), *au = e[0].unc.data_ptr<T>();
      const T *ei = e[1].ipt.data_ptr<T>(), *eu = e[1].unc.data_ptr<T>();
      const T *bi = e[2].ipt.data_ptr<T>(), *bu = e[2].unc.data_ptr<T>();
      const int64_t in = e[0].ipt.size(1), out_features = e[2].ipt.size(0);
      std::vector<double> b_sum(static_cast<size_t>(rank), 0.0);
      for (int64_t o = 0; o < out_features; ++o) {
        for (int64_t i = 0; i < rank; ++i) {
          b_sum[i] += static_cast<double>(bi[o * rank + i]) * bu[o * rank + i];
        }
      }
      for (int64_t i = 0; i < rank; ++i) {
        double a_sum = 0;
        for (int64_t j = 0; j < in; ++j)
          a_sum += static_cast<double>(ai[i * in + j]) * au[i * in + j];
        s[i] = static_cast<double>(ei[i]) * eu[i] + a_sum / static_cast<double>(in) +
               b_sum[i] / static_cast<double>(out_features);
      }
    });
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<torch::Tensor> RankAllocator::TripletScores() const {
  const std::vector<std::vector<double>> lists = ScoreLists();
  std::vector<torch::Tensor> out;
  for (size_t k = 0; k < modules_.size(); ++k) {
    out.push_back(torch::tensor(lists[k], torch::kDouble).to(emas_[k][1].ipt.options()));
  }
  return out;
}

void RankAllocator::MaskToBudget(int64_t budget) {
  const int64_t init_bgt = schedule_.init_r * static_cast<int64_t>(modules_.size());
  const int64_t k = init_bgt - budget;
  if (k <= 0) return;  // nothing to mask (PEFT's kthvalue crashes on k = 0)
  // Plain loops on the host: this runs every step of the schedule, and per module it was a dozen
  // ATen kernels, a kthvalue and a copy to the host.
  const std::vector<std::vector<double>> scores = ScoreLists();
  std::vector<double> all;
  for (const auto& s : scores) all.insert(all.end(), s.begin(), s.end());
  if (k > static_cast<int64_t>(all.size())) return;
  std::nth_element(all.begin(), all.begin() + (k - 1), all.end());
  const double threshold = all[k - 1];  // the k-th smallest, as kthvalue
  for (size_t i = 0; i < modules_.size(); ++i) {
    std::vector<bool> mask(scores[i].size());
    for (size_t j = 0; j < mask.size(); ++j) mask[j] = scores[i][j] > threshold;
    modules_[i].second->SetKeep(mask);
  }
}

void RankAllocator::Step(int64_t global_step) {
  const int64_t final_step = schedule_.total_step - schedule_.tfinal;
  const int64_t n = static_cast<int64_t>(modules_.size());
  if (global_step < final_step) {
    UpdateImportance();
    const Budget b = BudgetAt(schedule_, n, global_step);
    if (b.mask) MaskToBudget(b.budget);
  } else if (global_step == final_step && !frozen_) {
    // PEFT updates importance only while global_step < T − tfinal: the final mask ranks by the
    // averages of the step before.
    MaskToBudget(BudgetAt(schedule_, n, global_step).budget);
    frozen_ = true;
    for (auto& e : emas_) {
      for (auto& x : e) {
        x.ipt.zero_();
        x.unc.zero_();
      }
    }
  } else {
    // After the final mask: E entries the optimizer moved are masked again every step.
    for (auto& [name, m] : modules_) m->SetKeep(m->keep());
  }
}

torch::Tensor RankAllocator::OrthogonalityPenalty() const {
  std::vector<torch::Tensor> a, b;
  for (const auto& [name, m] : modules_) {
    a.push_back(m->lora_A);
    b.push_back(m->lora_B);
  }
  return adapters::OrthogonalityPenalty(a, b, schedule_.orth_reg_weight);
}

std::map<std::string, std::vector<bool>> RankAllocator::RankPattern() const {
  std::map<std::string, std::vector<bool>> out;
  for (const auto& [name, m] : modules_) out[name] = m->keep();
  return out;
}

std::map<std::string, int64_t> RankAllocator::Ranks() const {
  std::map<std::string, int64_t> out;
  for (const auto& [name, m] : modules_) out[name] = m->Rank();
  return out;
}

std::map<std::string, torch::Tensor> RankAllocator::StateDict() const {
  std::map<std::string, torch::Tensor> out;
  const char* kinds[3] = {"A", "E", "B"};
  for (size_t k = 0; k < modules_.size(); ++k) {
    const std::string& name = modules_[k].first;
    for (int i = 0; i < 3; ++i) {
      out[absl::StrCat(name, ".", kinds[i], ".ipt")] = emas_[k][i].ipt;
      out[absl::StrCat(name, ".", kinds[i], ".unc")] = emas_[k][i].unc;
    }
    const auto& keep = modules_[k].second->keep();
    torch::Tensor mask = torch::empty({static_cast<int64_t>(keep.size())}, torch::kBool);
    for (size_t j = 0; j < keep.size(); ++j)
      mask[static_cast<int64_t>(j)] = static_cast<bool>(keep[j]);
    out[name + ".keep"] = mask;
  }
  out["__frozen__"] = torch::tensor({frozen_ ? 1 : 0}, torch::kInt64);
  return out;
}

absl::Status RankAllocator::LoadStateDict(const std::map<std::string, torch::Tensor>& state) {
  auto get = [&](const std::string& key) -> absl::StatusOr<torch::Tensor> {
    auto it = state.find(key);
    if (it == state.end())
      return absl::InvalidArgumentError(absl::StrCat("rank allocator state: missing ", key));
    return it->second;
  };
  const char* kinds[3] = {"A", "E", "B"};
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < modules_.size(); ++k) {
    const std::string& name = modules_[k].first;
    for (int i = 0; i < 3; ++i) {
      for (auto [suffix, dst] : {std::pair<const char*, torch::Tensor*>{".ipt", &emas_[k][i].ipt},
                                 {".unc", &emas_[k][i].unc}}) {
        auto t = get(absl::StrCat(name, ".", kinds[i], suffix));
        if (!t.ok()) return t.status();
        dst->copy_(*t);
      }
    }
    auto keep = get(name + ".keep");
    if (!keep.ok()) return keep.status();
    std::vector<bool> mask(static_cast<size_t>(keep->numel()));
    for (int64_t j = 0; j < keep->numel(); ++j) mask[j] = (*keep)[j].item<bool>();
    // Only the pattern: E itself is restored with the trainable tensors.
    modules_[k].second->SetKeep(mask);
  }
  auto frozen = get("__frozen__");
  if (!frozen.ok()) return frozen.status();
  frozen_ = frozen->item<int64_t>() != 0;
  return absl::OkStatus();
}

}  // namespace peftd::adapters
