//! CSV and JSON renderings of watch-log rows, for exports and the CLI.

use super::query::WatchLogEntry;

/// RFC 4180 CSV with a header line. Cells that a spreadsheet would run as a
/// formula (leading `=`, `+`, `-`, `@`, TAB or CR) are prefixed with `'`.
pub fn to_csv(entries: &[WatchLogEntry]) -> String {
    let mut out = String::from(
        "id,created_at,path,user_id,is_authenticated,ip,method,status,range,bytes_sent,duration_ms,completed,user_agent\r\n",
    );
    for e in entries {
        let fields = [
            e.id.to_string(),
            e.created_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            e.path.clone(),
            e.user_id.clone().unwrap_or_default(),
            e.is_authenticated.to_string(),
            e.ip.clone().unwrap_or_default(),
            e.method.clone(),
            e.status.to_string(),
            e.range_header.clone().unwrap_or_default(),
            e.bytes_sent.to_string(),
            e.duration_ms.to_string(),
            e.completed.to_string(),
            e.user_agent.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One CSV cell, quoted when needed and defused against formula injection.
pub fn csv_field(field: &str) -> String {
    // TAB and CR too: spreadsheets strip them and then read what follows.
    let risky = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let defused = if risky && field.parse::<f64>().is_err() {
        format!("'{field}")
    } else {
        field.to_owned()
    };
    if defused.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

/// A JSON array of rows.
pub fn to_json(entries: &[WatchLogEntry]) -> String {
    serde_json::to_string_pretty(entries).unwrap_or_else(|_| "[]".to_owned())
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_cells() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("\t=cmd()"), "'\t=cmd()");
        assert_eq!(csv_field("\r=cmd()"), "\"'\r=cmd()\"");
        assert_eq!(csv_field("-5"), "-5");
    }
}
