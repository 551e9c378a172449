#include "server/sweep_expand.h"

#include <cmath>
#include <limits>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/job_spec.h"
#include "common/status.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"

namespace peftd::server {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// The entries of a list value: "q_proj+v_proj" -> {q_proj, v_proj}; "re:..." stays whole, since a
// regex may hold a '+'.
std::vector<std::string> ListEntries(const std::string& value) {
  if (absl::StartsWith(value, "re:")) return {value};
  return absl::StrSplit(value, '+', absl::SkipEmpty());
}

absl::Status SetInteger(Message* m, const FieldDescriptor* f, const std::string& text, bool add) {
  const Reflection* r = m->GetReflection();
  int64_t v = 0;
  uint64_t u = 0;
  const bool is_unsigned = f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32 ||
                           f->cpp_type() == FieldDescriptor::CPPTYPE_UINT64;
  if (is_unsigned ? !absl::SimpleAtoi(text, &u) : !absl::SimpleAtoi(text, &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not ", is_unsigned ? "a non-negative " : "an ", "integer"));
  }
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
        return absl::InvalidArgumentError(absl::StrCat(text, " does not fit a 32-bit integer"));
      }
      add ? r->AddInt32(m, f, static_cast<int32_t>(v)) : r->SetInt32(m, f, static_cast<int32_t>(v));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      add ? r->AddInt64(m, f, v) : r->SetInt64(m, f, v);
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      if (u > std::numeric_limits<uint32_t>::max()) {
        return absl::InvalidArgumentError(absl::StrCat(text, " does not fit a 32-bit integer"));
      }
      add ? r->AddUInt32(m, f, static_cast<uint32_t>(u))
          : r->SetUInt32(m, f, static_cast<uint32_t>(u));
      break;
    default:
      add ? r->AddUInt64(m, f, u) : r->SetUInt64(m, f, u);
      break;
  }
  return absl::OkStatus();
}

absl::Status SetScalar(Message* m, const FieldDescriptor* f, const std::string& text) {
  const Reflection* r = m->GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      return SetInteger(m, f, text, /*add=*/false);
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double d = 0;
      if (!absl::SimpleAtod(text, &d) || !std::isfinite(d)) {
        return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a finite number"));
      }
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
        r->SetDouble(m, f, d);
      } else {
        r->SetFloat(m, f, static_cast<float>(d));
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool b = false;
      if (!absl::SimpleAtob(text, &b)) {
        return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not true or false"));
      }
      r->SetBool(m, f, b);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const std::string name = absl::AsciiStrToUpper(absl::StrReplaceAll(text, {{"-", "_"}}));
      const auto* v = f->enum_type()->FindValueByName(name);
      if (v == nullptr || v->number() == 0) {
        std::vector<std::string> names;
        for (int i = 1; i < f->enum_type()->value_count(); ++i) {
          names.push_back(absl::AsciiStrToLower(f->enum_type()->value(i)->name()));
        }
        return absl::InvalidArgumentError(
            absl::StrCat("'", text, "' is not one of ", absl::StrJoin(names, ", ")));
      }
      r->SetEnum(m, f, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_STRING:
      r->SetString(m, f, text);
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("is a message; sweep one of its fields (e.g. lora.r)");
  }
}

}  // namespace

absl::Status SetSpecField(v1::JobSpec* spec, const std::string& path, const std::string& value) {
  const std::vector<std::string> parts = absl::StrSplit(path, '.');
  Message* m = spec;
  for (size_t i = 0; i < parts.size(); ++i) {
    const FieldDescriptor* f = m->GetDescriptor()->FindFieldByName(parts[i]);
    if (f == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("'", path, "': ", m->GetDescriptor()->name(),
                                                     " has no field '", parts[i], "'"));
    }
    const bool last = i + 1 == parts.size();
    if (!last) {
      if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE || f->is_repeated()) {
        return absl::InvalidArgumentError(
            absl::StrCat("'", path, "': ", parts[i], " is not a message"));
      }
      m = m->GetReflection()->MutableMessage(m, f);
      continue;
    }
    if (f->is_repeated()) {
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        return absl::InvalidArgumentError(absl::StrCat("'", path, "' cannot be swept"));
      }
      m->GetReflection()->ClearField(m, f);
      for (const std::string& entry : ListEntries(value)) {
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
          m->GetReflection()->AddString(m, f, entry);
        } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
          RETURN_IF_ERROR(SetInteger(m, f, entry, /*add=*/true));
        } else {
          return absl::InvalidArgumentError(absl::StrCat("'", path, "' cannot be swept"));
        }
      }
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(SetScalar(m, f, value));
  }
  if (path == "method" && spec->method_params_case() != v1::JobSpec::METHOD_PARAMS_NOT_SET &&
      spec->method_params_case() != MethodParamsCaseOf(spec->method())) {
    spec->clear_method_params();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SweepPoint>> ExpandSweep(const v1::SweepSpec& spec, int max_children) {
  if (spec.axes_size() == 0) {
    return absl::InvalidArgumentError("spec.axes: a sweep needs at least one axis");
  }
  if (!v1::SweepMode_IsValid(spec.mode())) {
    return absl::InvalidArgumentError(absl::StrCat("spec.mode: ", spec.mode(), " is not a mode"));
  }
  const bool grid = spec.mode() != v1::LIST;
  // The method axis goes first, so that parameters of the method a child gets survive it.
  std::vector<int> order;
  std::set<std::string> seen;
  int64_t children = 1;
  for (int a = 0; a < spec.axes_size(); ++a) {
    const v1::SweepAxis& axis = spec.axes(a);
    const std::string where = absl::StrCat("spec.axes[", a, "]");
    if (!seen.insert(axis.field()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".field: '", axis.field(), "' is swept by an earlier axis too"));
    }
    if (axis.values_size() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".values: at least one value"));
    }
    for (int v = 0; v < axis.values_size(); ++v) {
      v1::JobSpec scratch = spec.base();
      absl::Status st = SetSpecField(&scratch, axis.field(), axis.values(v));
      if (!st.ok()) {
        const bool field_wrong = absl::StartsWith(st.message(), "'" + axis.field() + "'");
        return absl::InvalidArgumentError(
            field_wrong
                ? absl::StrCat(where, ".field: ", st.message())
                : absl::StrCat(where, ".values[", v, "]: ", axis.field(), ": ", st.message()));
      }
    }
    if (grid) {
      children *= axis.values_size();
      if (children > max_children) {
        return absl::InvalidArgumentError(
            absl::StrCat("spec.axes: the grid makes more than ", max_children,
                         " children, the most a sweep may have here (peftd --max-sweep-children)"));
      }
    } else if (axis.values_size() != spec.axes(0).values_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".values: has ", axis.values_size(), " values and spec.axes[0] has ",
                       spec.axes(0).values_size(), "; a LIST sweep takes value i of every axis"));
    }
    if (axis.field() == "method") {
      order.insert(order.begin(), a);
    } else {
      order.push_back(a);
    }
  }
  if (!grid) {
    children = spec.axes(0).values_size();
    if (children > max_children) {
      return absl::InvalidArgumentError(absl::StrCat("spec.axes: the list makes ", children,
                                                     " children; at most ", max_children,
                                                     " here (peftd --max-sweep-children)"));
    }
  }
  std::vector<SweepPoint> points;
  points.reserve(children);
  for (int64_t c = 0; c < children; ++c) {
    // Child c's value index on each axis: mixed radix with the last axis fastest (GRID).
    std::vector<int> pick(spec.axes_size());
    int64_t rest = c;
    for (int a = spec.axes_size() - 1; a >= 0; --a) {
      pick[a] = grid ? static_cast<int>(rest % spec.axes(a).values_size()) : static_cast<int>(c);
      if (grid) rest /= spec.axes(a).values_size();
    }
    SweepPoint point;
    point.spec = spec.base();
    for (int a : order) {
      RETURN_IF_ERROR(
          SetSpecField(&point.spec, spec.axes(a).field(), spec.axes(a).values(pick[a])));
    }
    for (int a = 0; a < spec.axes_size(); ++a) {
      v1::SweepAssignment as;
      as.set_field(spec.axes(a).field());
      as.set_value(spec.axes(a).values(pick[a]));
      point.assignments.push_back(std::move(as));
    }
    points.push_back(std::move(point));
  }
  return points;
}

std::string DescribeAssignments(const std::vector<v1::SweepAssignment>& assignments) {
  return absl::StrJoin(assignments, ", ", [](std::string* out, const v1::SweepAssignment& a) {
    absl::StrAppend(out, a.field(), "=", a.value());
  });
}

}  // namespace peftd::server
