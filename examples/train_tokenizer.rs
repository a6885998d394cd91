//! Trains the byte-level BPE tokenizer shipped in `sample-data/tokenizer/`, from the
//! sample corpus, with the Hugging Face `tokenizers` crate: nothing is downloaded.
//!
//!     cargo run --example train_tokenizer -- sample-data/web sample-data/tokenizer/tokenizer.json
//!
//! The same recipe as `../shared/bench/train_tokenizer.py` (GPT-2 byte-level
//! pre-tokenizer without prefix space, min_frequency 2, one special token
//! `<|endoftext|>` with id 0, ByteLevel post-processor), with a small vocabulary
//! (4096) to keep the file small. Training is deterministic: a rerun writes the same
//! bytes.

use std::io::{BufRead, BufReader};

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, TokenizerBuilder};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, out) = match args.as_slice() {
        [_, dir, out] => (dir, out),
        _ => return Err("usage: train_tokenizer CORPUS_DIR OUT.json".into()),
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".jsonl.gz"))
        .collect();
    paths.sort();
    let mut texts = Vec::new();
    for p in &paths {
        let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(p)?);
        for line in BufReader::new(gz).lines() {
            let v: serde_json::Value = serde_json::from_str(&line?)?;
            if let Some(t) = v["text"].as_str() {
                texts.push(t.to_string());
            }
        }
    }
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(4096)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from("<|endoftext|>", true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_post_processor(Some(ByteLevel::new(false, false, true)))
        .with_decoder(Some(ByteLevelDecoder::default()))
        .build()?;
    tokenizer.train(&mut trainer, texts.iter())?;
    if let Some(parent) = std::path::Path::new(out).parent() {
        std::fs::create_dir_all(parent)?;
    }
    tokenizer.save(out, false)?;
    println!(
        "trained on {} documents from {} files: vocab {} → {out}",
        texts.len(),
        paths.len(),
        tokenizer.get_vocab_size(true)
    );
    Ok(())
}
