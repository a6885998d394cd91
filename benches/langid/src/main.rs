//! Accuracy and speed of whatlang, whichlang and lingua on the labelled sample, on the
//! 16 languages all three support (whichlang's set).

use std::time::Instant;

use lingua::{Language, LanguageDetectorBuilder};

const LANGS: [&str; 16] = [
    "ar", "zh", "nl", "en", "fr", "de", "hi", "it", "ja", "ko", "pt", "ru", "es", "sv", "tr", "vi",
];

fn whatlang_code(l: whatlang::Lang) -> &'static str {
    use whatlang::Lang::*;
    match l {
        Ara => "ar", Cmn => "zh", Nld => "nl", Eng => "en", Fra => "fr", Deu => "de",
        Hin => "hi", Ita => "it", Jpn => "ja", Kor => "ko", Por => "pt", Rus => "ru",
        Spa => "es", Swe => "sv", Tur => "tr", Vie => "vi", _ => "other",
    }
}

#[allow(unreachable_patterns, reason = "every language of this whichlang is listed; the catch-all keeps a newer one compiling")]
fn whichlang_code(l: whichlang::Lang) -> &'static str {
    use whichlang::Lang::*;
    match l {
        Ara => "ar", Cmn => "zh", Nld => "nl", Eng => "en", Fra => "fr", Deu => "de",
        Hin => "hi", Ita => "it", Jpn => "ja", Kor => "ko", Por => "pt", Rus => "ru",
        Spa => "es", Swe => "sv", Tur => "tr", Vie => "vi",
    }
}

fn lingua_code(l: Language) -> &'static str {
    use Language::*;
    match l {
        Arabic => "ar", Chinese => "zh", Dutch => "nl", English => "en", French => "fr",
        German => "de", Hindi => "hi", Italian => "it", Japanese => "ja", Korean => "ko",
        Portuguese => "pt", Russian => "ru", Spanish => "es", Swedish => "sv",
        Turkish => "tr", Vietnamese => "vi",
        _ => "other",
    }
}

fn main() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/sample.jsonl");
    let rows: Vec<(String, String, String)> = std::fs::read_to_string(path)
        .expect("sample.jsonl (run make_sample.py)")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            (
                v["lang"].as_str().unwrap_or_default().to_string(),
                v["kind"].as_str().unwrap_or_default().to_string(),
                v["text"].as_str().unwrap_or_default().to_string(),
            )
        })
        .filter(|(l, _, _)| LANGS.contains(&l.as_str()))
        .collect();
    let lingua_all = LanguageDetectorBuilder::from_all_languages().build();
    let lingua_low = LanguageDetectorBuilder::from_all_languages()
        .with_low_accuracy_mode()
        .build();
    type Detect<'a> = Box<dyn Fn(&str) -> &'static str + 'a>;
    let engines: Vec<(&str, Detect)> = vec![
        ("whatlang 0.18", Box::new(|t: &str| whatlang::detect_lang(t).map_or("none", whatlang_code))),
        ("whatlang 0.18, first 1000 chars", Box::new(|t: &str| {
            let end = t.char_indices().nth(1000).map_or(t.len(), |(i, _)| i);
            whatlang::detect_lang(&t[..end]).map_or("none", whatlang_code)
        })),
        ("whichlang 0.1", Box::new(|t: &str| whichlang_code(whichlang::detect_language(t)))),
        ("lingua 1.8 (high accuracy)", Box::new(|t: &str| lingua_all.detect_language_of(t).map_or("none", lingua_code))),
        ("lingua 1.8 (low accuracy)", Box::new(|t: &str| lingua_low.detect_language_of(t).map_or("none", lingua_code))),
    ];
    println!("{} texts in 16 languages ({} sentences, {} documents)", rows.len(),
        rows.iter().filter(|r| r.1 == "sentence").count(),
        rows.iter().filter(|r| r.1 == "document").count());
    println!("| crate | sentences correct | documents correct | docs/s (documents, 1 thread) | MB/s |");
    println!("|---|---|---|---|---|");
    for (name, detect) in &engines {
        let mut correct = [0usize; 2];
        let mut total = [0usize; 2];
        for (lang, kind, text) in &rows {
            let k = usize::from(kind == "document");
            total[k] += 1;
            correct[k] += usize::from(detect(text) == lang);
        }
        let docs: Vec<&str> = rows.iter().filter(|r| r.1 == "document").map(|r| r.2.as_str()).collect();
        let bytes: usize = docs.iter().map(|d| d.len()).sum();
        let started = Instant::now();
        let mut n = 0;
        while started.elapsed().as_secs_f64() < 2.0 {
            for d in &docs {
                std::hint::black_box(detect(d));
            }
            n += 1;
        }
        let s = started.elapsed().as_secs_f64();
        println!(
            "| {name} | {:.1}% ({}/{}) | {:.1}% ({}/{}) | {:.0} | {:.1} |",
            100.0 * correct[0] as f64 / total[0] as f64, correct[0], total[0],
            100.0 * correct[1] as f64 / total[1] as f64, correct[1], total[1],
            (n * docs.len()) as f64 / s,
            (n * bytes) as f64 / s / 1e6,
        );
    }
}
