//! apilb: one binary that fronts kube-apiservers.
