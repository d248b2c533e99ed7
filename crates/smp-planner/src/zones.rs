//! Anatomical zones and the final density each aims for.
//!
//! With a `[zones]` table a point's zone is read from its direction seen from the head
//! centre (sagittal angle `atan2(x, z)`: 0 at the vertex, positive toward the nose; lateral
//! angle `atan2(|y|, z)`), in this order of precedence:
//!
//! 1. `scar`: the map labels the cell scar;
//! 2. `hairline`: within the designed hairline's transition band;
//! 3. `temple`: front half (x > 0) and lateral angle above `temple_from_deg`;
//! 4. `frontal`: sagittal angle above `frontal_from_deg`;
//! 5. `crown`: sagittal angle below `crown_from_deg` (behind the vertex);
//! 6. `mid_scalp`: the rest.
//!
//! Without `[zones]` (the crown session files of issue 2) every point keeps the spec's
//! `zone` and `target_density_per_cm2` as before; scar cells are labelled scar, and the
//! hairline band (when a `[hairline]` is set) hairline.

use serde::Serialize;
use smp_core::plan::{SessionSpec, Zone, ZonesSpec};

/// Default final densities per cm² of skin (DOMAIN: natural scalp 65-85 follicular units).
/// They sit at the low end on purpose: with the hard 0.9 mm minimum spacing, dots added in
/// three random layers (each layer's dots where the healed scan leaves room, faded dots
/// still keeping their spacing) saturate at about 70 per cm², so higher targets cannot be
/// met (the plan then warns of the shortfall and the metrics show it).
pub const DEFAULT_FRONTAL_PER_CM2: f64 = 70.0;
pub const DEFAULT_MID_SCALP_PER_CM2: f64 = 68.0;
pub const DEFAULT_CROWN_PER_CM2: f64 = 65.0;
pub const DEFAULT_TEMPLE_PER_CM2: f64 = 65.0;
/// Scar tissue takes pigment unevenly and spreads it: fewer dots.
pub const DEFAULT_SCAR_PER_CM2: f64 = 45.0;

/// Zone rules resolved from a spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneRules {
    /// `Some(zone)`: no `[zones]` table, every non-scar, non-hairline point is this zone and
    /// every zone aims for the spec's single target.
    pub legacy_zone: Option<Zone>,
    /// Final density per cm² by zone, in [`Zone::ALL`] order.
    pub target_per_cm2: [f64; 6],
    pub frontal_from_deg: f64,
    pub crown_from_deg: f64,
    pub temple_from_deg: f64,
}

fn zone_index(z: Zone) -> usize {
    Zone::ALL.iter().position(|a| *a == z).unwrap_or(0)
}

impl ZoneRules {
    pub fn from_spec(spec: &SessionSpec) -> Self {
        match &spec.zones {
            None => ZoneRules {
                legacy_zone: Some(spec.zone),
                target_per_cm2: [spec.target_density_per_cm2; 6],
                frontal_from_deg: 30.0,
                crown_from_deg: -15.0,
                temple_from_deg: 50.0,
            },
            Some(z) => Self::from_table(z),
        }
    }

    pub fn from_table(z: &ZonesSpec) -> Self {
        let frontal = z.frontal_per_cm2.unwrap_or(DEFAULT_FRONTAL_PER_CM2);
        let mut t = [0.0; 6];
        t[zone_index(Zone::Hairline)] = z.hairline_per_cm2.unwrap_or(frontal);
        t[zone_index(Zone::Frontal)] = frontal;
        t[zone_index(Zone::MidScalp)] = z.mid_scalp_per_cm2.unwrap_or(DEFAULT_MID_SCALP_PER_CM2);
        t[zone_index(Zone::Crown)] = z.crown_per_cm2.unwrap_or(DEFAULT_CROWN_PER_CM2);
        t[zone_index(Zone::Temple)] = z.temple_per_cm2.unwrap_or(DEFAULT_TEMPLE_PER_CM2);
        t[zone_index(Zone::Scar)] = z.scar_per_cm2.unwrap_or(DEFAULT_SCAR_PER_CM2);
        ZoneRules {
            legacy_zone: None,
            target_per_cm2: t,
            frontal_from_deg: z.frontal_from_deg.unwrap_or(30.0),
            crown_from_deg: z.crown_from_deg.unwrap_or(-15.0),
            temple_from_deg: z.temple_from_deg.unwrap_or(50.0),
        }
    }

    /// Final density of a zone, per cm² of skin.
    pub fn target_per_cm2(&self, z: Zone) -> f64 {
        self.target_per_cm2[zone_index(z)]
    }

    /// The zone a head point belongs to, ignoring scar and hairline (its "body" zone).
    pub fn body_zone(&self, p_head: [f64; 3]) -> Zone {
        if let Some(z) = self.legacy_zone {
            return z;
        }
        let [x, y, z] = p_head;
        let sagittal = x.atan2(z).to_degrees();
        let lateral = y.abs().atan2(z).to_degrees();
        if x > 0.0 && lateral > self.temple_from_deg {
            Zone::Temple
        } else if sagittal > self.frontal_from_deg {
            Zone::Frontal
        } else if sagittal < self.crown_from_deg {
            Zone::Crown
        } else {
            Zone::MidScalp
        }
    }

    /// The zone of a point given whether its cell is scar and whether it lies in the
    /// hairline band.
    pub fn zone(&self, p_head: [f64; 3], scar: bool, in_hairline_band: bool) -> Zone {
        if scar {
            Zone::Scar
        } else if in_hairline_band {
            Zone::Hairline
        } else {
            self.body_zone(p_head)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ZoneRules {
        ZoneRules::from_table(&ZonesSpec::default())
    }

    #[test]
    fn zones_follow_the_head_geometry() {
        let r = rules();
        assert_eq!(r.body_zone([80.0, 0.0, 50.0]), Zone::Frontal);
        assert_eq!(r.body_zone([0.0, 0.0, 88.0]), Zone::MidScalp);
        assert_eq!(r.body_zone([-60.0, 0.0, 60.0]), Zone::Crown);
        assert_eq!(r.body_zone([40.0, 70.0, 30.0]), Zone::Temple);
        assert_eq!(r.body_zone([-40.0, -70.0, 30.0]), Zone::Crown, "the back of the sides is not temple");
        assert_eq!(r.zone([80.0, 0.0, 50.0], true, true), Zone::Scar);
        assert_eq!(r.zone([80.0, 0.0, 50.0], false, true), Zone::Hairline);
    }

    #[test]
    fn defaults_imitate_natural_density_and_scar_is_sparser() {
        let r = rules();
        for z in [Zone::Hairline, Zone::Frontal, Zone::MidScalp, Zone::Crown, Zone::Temple] {
            assert!((65.0..=85.0).contains(&r.target_per_cm2(z)), "{z:?}");
        }
        assert!(r.target_per_cm2(Zone::Scar) < r.target_per_cm2(Zone::Crown));
    }

    #[test]
    fn without_a_zones_table_the_spec_zone_and_target_hold() {
        let spec = smp_core::plan::SessionSpec::from_toml_str(crate::DEFAULT_SESSION1_TOML).expect("parses");
        let r = ZoneRules::from_spec(&spec);
        assert_eq!(r.body_zone([80.0, 0.0, 50.0]), Zone::Crown);
        assert_eq!(r.target_per_cm2(Zone::Scar), spec.target_density_per_cm2);
        assert_eq!(r.zone([0.0, 0.0, 1.0], true, false), Zone::Scar);
    }
}
