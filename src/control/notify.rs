//! systemd's notify protocol (`Type=notify`), through the sd-notify crate: READY=1 once the
//! listeners are bound and the first round of health checks has run, RELOADING=1 (with
//! MONOTONIC_USEC) ... READY=1 around a reload, STOPPING=1 when the drain starts, STATUS=
//! lines for `systemctl status`, and WATCHDOG=1 from the data plane when `WatchdogSec=` is
//! set. Without NOTIFY_SOCKET (not under systemd) nothing is sent.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::backend::View;
use crate::vip::VipStatus;

/// Sends to systemd when it listens.
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    /// From the environment systemd sets (NOTIFY_SOCKET).
    pub fn from_env() -> Self {
        Self {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty()),
        }
    }

    /// How often to send WATCHDOG=1: half of `WatchdogSec=`, when systemd asks for it.
    pub fn watchdog_every() -> Option<Duration> {
        sd_notify::watchdog_enabled()
            .filter(|d| !d.is_zero())
            .map(|d| d / 2)
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "systemd notification not sent");
        }
    }

    /// Started and checked: READY=1 with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A reload starts.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// The drain starts.
    pub fn stopping(&self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    /// A new status line.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// The data plane is alive.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

/// The line `systemctl status` shows: `3/3 backends up; vip master (VRID 51)`.
pub(super) fn status_line(view: &View, vip: Option<&VipStatus>) -> String {
    let mut s = format!("{}/{} backends up", view.up(), view.endpoints.len());
    if let Some(v) = vip {
        s.push_str(&format!("; vip {} (VRID {})", v.state, v.vrid));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{EndpointView, State};

    #[test]
    fn the_status_line_counts_up_backends_and_names_the_vip_state() {
        let view = View {
            endpoints: vec![
                EndpointView {
                    name: "a".into(),
                    state: State::Up,
                },
                EndpointView {
                    name: "b".into(),
                    state: State::Down,
                },
            ],
        };
        assert_eq!(status_line(&view, None), "1/2 backends up");
        let vip = VipStatus {
            state: "master".into(),
            vrid: 51,
            interface: "eth0".into(),
            addresses: vec!["10.0.0.100/24".into()],
            priority: 150,
            configured_priority: 150,
            master: None,
        };
        assert_eq!(
            status_line(&view, Some(&vip)),
            "1/2 backends up; vip master (VRID 51)"
        );
    }
}
