//! Which raster bands feed the model: the user's `--bands`, else what the model recorded from its
//! training chips, else the raster's image bands when their count matches. Alpha bands are never
//! image data, a single band is repeated only for a model trained on single-band images, and a
//! raster with more bands than the model takes is refused rather than silently cut to its first
//! ones.

use std::path::Path;

use anyhow::{bail, Result};

use crate::config::InputBands;

/// The chosen 1-based bands, and a line saying why when the choice was not the obvious one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BandChoice {
    pub bands: Vec<usize>,
    pub note: Option<String>,
}

/// Chooses the bands of `raster` (with `raster_bands` bands, of which `alpha` are alpha or mask
/// bands) for a model with `model_inputs` inputs trained as `trained` says.
pub fn choose_bands(
    raster: &Path,
    raster_bands: usize,
    alpha: &[usize],
    model_inputs: usize,
    trained: &InputBands,
    requested: &[usize],
) -> Result<BandChoice> {
    let name = raster.display();
    if !requested.is_empty() {
        if let Some(b) = requested.iter().find(|&&b| b == 0 || b > raster_bands) {
            bail!("{name}: --bands names band {b} but the raster has bands 1..={raster_bands}");
        }
        if requested.len() == model_inputs {
            return Ok(BandChoice { bands: requested.to_vec(), note: None });
        }
        if requested.len() == 1 {
            return Ok(BandChoice {
                bands: vec![requested[0]; model_inputs],
                note: Some(format!("repeating band {} to the model's {model_inputs} inputs", requested[0])),
            });
        }
        bail!(
            "{name}: --bands names {} band(s) but the model takes {model_inputs}; give {model_inputs} (or one, to \
             repeat it)",
            requested.len()
        );
    }
    let image: Vec<usize> = (1..=raster_bands).filter(|b| !alpha.contains(b)).collect();
    if !trained.raster_bands.is_empty()
        && trained.raster_bands.len() == model_inputs
        && trained.raster_bands.iter().all(|&b| b <= raster_bands)
        && image.len() > model_inputs
    {
        return Ok(BandChoice {
            bands: trained.raster_bands.clone(),
            note: Some(format!(
                "using bands {} of the raster's {raster_bands}, the bands the model's training chips were cut from \
                 (--bands to choose others)",
                join(&trained.raster_bands)
            )),
        });
    }
    if let ([band], Some(1)) = (trained.raster_bands.as_slice(), trained.image_bands) {
        if *band <= raster_bands && image.len() != 1 {
            return Ok(BandChoice {
                bands: vec![*band; model_inputs],
                note: Some(format!(
                    "repeating band {band} to the model's {model_inputs} inputs, the band its training chips were cut                      from (--bands to choose another)"
                )),
            });
        }
    }
    let alpha_note = || (!alpha.is_empty()).then(|| format!("band {} is alpha (nodata), not image data", join(alpha)));
    if image.len() == model_inputs {
        return Ok(BandChoice { bands: image, note: alpha_note() });
    }
    if image.len() == 1 {
        if trained.image_bands == Some(1) {
            return Ok(BandChoice {
                bands: vec![image[0]; model_inputs],
                note: Some(format!(
                    "repeating band {} to the model's {model_inputs} inputs, as in its training on single-band images",
                    image[0]
                )),
            });
        }
        let example = join(&vec![image[0]; model_inputs]);
        bail!(
            "{name}: 1 image band but the model takes {model_inputs}{}; to feed the one band to every input use \
             --bands {example}",
            trained_on(trained)
        );
    }
    let example = join(&image[..model_inputs.min(image.len())]);
    if image.len() > model_inputs {
        bail!(
            "{name}: {} image bands but the model takes {model_inputs}{} and does not record which raster bands it \
             was trained on; choose them with --bands (e.g. --bands {example})",
            image.len(),
            trained_on(trained)
        );
    }
    bail!(
        "{name}: {} image band(s) but the model takes {model_inputs}{}; choose {model_inputs} with --bands (a band may \
         repeat)",
        image.len(),
        trained_on(trained)
    )
}

fn trained_on(trained: &InputBands) -> String {
    match trained.image_bands {
        Some(n) => format!(" (it was trained on {n}-band images)"),
        None => String::new(),
    }
}

fn join(bands: &[usize]) -> String {
    bands.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// Raster bands recorded in an Esri chips folder's `esri_model_definition.emd`
/// (`InputRastersProps.BandNames` "Band_4", "Band_3", ... as `export-chips` writes them); empty when absent or not of that form.
pub fn chip_raster_bands(data: &Path) -> Vec<usize> {
    let folder = if data.is_dir() { data } else { data.parent().unwrap_or(data) };
    let Ok(text) = std::fs::read_to_string(folder.join("esri_model_definition.emd")) else { return Vec::new() };
    let Ok(emd) = serde_json::from_str::<serde_json::Value>(&text) else { return Vec::new() };
    let names = emd.pointer("/InputRastersProps/BandNames").or_else(|| emd.get("BandNames"));
    let Some(names) = names.and_then(|n| n.as_array()) else { return Vec::new() };
    let bands: Option<Vec<usize>> = names
        .iter()
        .map(|n| n.as_str().and_then(|s| s.strip_prefix("Band_")).and_then(|s| s.parse().ok()).filter(|&b| b > 0))
        .collect();
    bands.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(
        raster_bands: usize,
        alpha: &[usize],
        inputs: usize,
        trained: &InputBands,
        req: &[usize],
    ) -> Result<BandChoice> {
        choose_bands(Path::new("scene.tif"), raster_bands, alpha, inputs, trained, req)
    }

    #[test]
    fn matching_rasters_need_nothing() {
        let c = choose(3, &[], 3, &InputBands::default(), &[]).unwrap();
        assert_eq!(c, BandChoice { bands: vec![1, 2, 3], note: None });
        // RGBA: the alpha band is not image data.
        let c = choose(4, &[4], 3, &InputBands::default(), &[]).unwrap();
        assert_eq!(c.bands, vec![1, 2, 3]);
        assert!(c.note.unwrap().contains("alpha"));
    }

    #[test]
    fn a_single_band_is_repeated_only_for_a_single_band_model() {
        let grey = InputBands { image_bands: Some(1), raster_bands: vec![] };
        let c = choose(1, &[], 3, &grey, &[]).unwrap();
        assert_eq!(c.bands, vec![1, 1, 1]);
        let err = choose(1, &[], 3, &InputBands { image_bands: Some(3), ..Default::default() }, &[]).unwrap_err();
        let err = err.to_string();
        assert!(err.contains("--bands 1,1,1") && err.contains("trained on 3-band"), "{err}");
        assert_eq!(choose(1, &[], 3, &InputBands::default(), &[1]).unwrap().bands, vec![1, 1, 1]);
    }

    #[test]
    fn more_bands_than_inputs_are_refused_unless_recorded_or_chosen() {
        let err = choose(8, &[], 3, &InputBands::default(), &[]).unwrap_err().to_string();
        assert!(err.contains("8 image bands") && err.contains("--bands"), "{err}");
        let recorded = InputBands { image_bands: Some(3), raster_bands: vec![5, 3, 2] };
        let c = choose(8, &[], 3, &recorded, &[]).unwrap();
        assert_eq!(c.bands, vec![5, 3, 2]);
        let one = InputBands { image_bands: Some(1), raster_bands: vec![4] };
        assert_eq!(choose(8, &[], 3, &one, &[]).unwrap().bands, vec![4, 4, 4]);
        assert_eq!(choose(8, &[], 3, &recorded, &[7, 5, 3]).unwrap().bands, vec![7, 5, 3]);
        let err = choose(8, &[], 3, &recorded, &[9, 1, 2]).unwrap_err().to_string();
        assert!(err.contains("band 9") && err.contains("1..=8"), "{err}");
        let err = choose(8, &[], 3, &recorded, &[1, 2]).unwrap_err().to_string();
        assert!(err.contains("2 band(s)"), "{err}");
        let err = choose(2, &[], 3, &InputBands::default(), &[]).unwrap_err().to_string();
        assert!(err.contains("2 image band(s)"), "{err}");
    }

    #[test]
    fn esri_chip_folders_record_their_bands() {
        let dir = tempfile::tempdir().unwrap();
        assert!(chip_raster_bands(dir.path()).is_empty());
        std::fs::write(
            dir.path().join("esri_model_definition.emd"),
            r#"{"ExtractBands": [0, 1, 2], "InputRastersProps": {"BandNames": ["Band_5", "Band_3", "Band_2"]}}"#,
        )
        .unwrap();
        assert_eq!(chip_raster_bands(dir.path()), vec![5, 3, 2]);
    }
}
