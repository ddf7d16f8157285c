//! The shipped config examples build (every `_env` variable set to a placeholder).

fn check(file: &str) -> usize {
    let path = format!(
        "{}/../../config/examples/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("example");
    let doc: toml::Value = toml::from_str(&text).expect("valid TOML");
    let tables = doc
        .get("connectors")
        .and_then(|c| c.as_array())
        .cloned()
        .expect("[[connectors]]");
    for (i, t) in tables.iter().enumerate() {
        let mut t = t.clone();
        if let Some(tt) = t.as_table_mut() {
            tt.remove("send_rate_per_sec");
            tt.remove("send_burst");
        }
        let kind = t
            .get("kind")
            .and_then(|k| k.as_str())
            .expect("kind")
            .to_string();
        let id = t
            .get("id")
            .and_then(|k| k.as_str())
            .expect("id")
            .to_string();
        let built = switchboard_email::build_in(
            &kind,
            &id,
            &format!("connectors[{i}]"),
            t,
            &|_| Some("placeholder".into()),
            &tables,
        )
        .expect("an email kind");
        if let Err(e) = built {
            panic!("{file}: {e}");
        }
    }
    tables.len()
}

#[test]
fn email_mailgun_postmark_sendgrid_examples_build() {
    assert_eq!(check("email.toml"), 1);
    assert_eq!(check("mailgun.toml"), 2);
    assert_eq!(check("postmark.toml"), 2);
    assert_eq!(check("sendgrid.toml"), 2);
}
