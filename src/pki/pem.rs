//! PEM text: encoding with 64-column lines and `\n` endings (as Go's `encoding/pem`),
//! and decoding of every block in a text. Blocks with headers are refused, as kubeadm refuses
//! certificates with PEM headers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// One PEM block.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // Invariant: base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Every block in `text` as (label, DER); text between blocks is ignored.
pub(crate) fn decode_all(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .trim_end()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut b64 = String::new();
        let mut closed = false;
        for body in lines.by_ref() {
            let body = body.trim();
            if body == end {
                closed = true;
                break;
            }
            if body.contains(':') {
                return Err(format!("{label} block has PEM headers"));
            }
            b64.push_str(body);
        }
        if !closed {
            return Err(format!("{label} block is not terminated"));
        }
        let der = STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| format!("{label} block is not valid base64: {e}"))?;
        out.push((label.to_owned(), der));
    }
    Ok(out)
}

/// The DER of every `CERTIFICATE` block, in order.
pub(crate) fn certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let certs: Vec<Vec<u8>> = decode_all(text)?
        .into_iter()
        .filter(|(l, _)| l == "CERTIFICATE")
        .map(|(_, d)| d)
        .collect();
    if certs.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_line_length() {
        let der: Vec<u8> = (0..=255u8).collect();
        let text = encode("CERTIFICATE", &der);
        assert!(text.lines().all(|l| l.len() <= 64));
        assert_eq!(certificates(&text).unwrap(), vec![der]);
        assert!(certificates("nothing").is_err());
        assert!(decode_all("-----BEGIN X-----\nAAAA\n").is_err());
        assert!(
            decode_all("-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\n-----END X-----\n").is_err()
        );
    }
}
