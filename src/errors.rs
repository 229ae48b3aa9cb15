//! Error reporting shared by the binary and the control plane.

/// `err` and its sources, once each: `a: b: c`.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:1")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_source_is_printed_once() {
        let e = Outer(std::io::Error::other("Address already in use"));
        assert_eq!(
            super::chain(&e),
            "cannot listen on 127.0.0.1:1: Address already in use"
        );
    }
}
