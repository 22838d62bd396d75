//! Writes a synthetic COCO dataset: `cargo run -p maskrcnn-data --example make_synthetic -- OUT_DIR [N] [SIZE] [SEED]`.
use maskrcnn_data::synthetic::{generate, write_coco, SyntheticConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args.first().map(String::as_str).unwrap_or("synthetic");
    let parse = |i: usize, default: u64| -> anyhow::Result<u64> {
        Ok(match args.get(i) {
            Some(v) => v.parse().map_err(|_| anyhow::anyhow!("argument {i} ({v}) is not a number"))?,
            None => default,
        })
    };
    let config = SyntheticConfig {
        num_images: parse(1, 64)? as usize,
        image_size: parse(2, 128)? as usize,
        seed: parse(3, 0)?,
        ..Default::default()
    };
    let ds = generate(&config)?;
    let json = write_coco(&ds, std::path::Path::new(out))?;
    let instances: usize = ds.images.iter().map(|i| i.objects.len()).sum();
    println!("wrote {} images, {instances} instances: {}", ds.images.len(), json.display());
    Ok(())
}
