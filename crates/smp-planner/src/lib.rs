//! Pure planning: hairline, density, dot placement, layering, ordering, estimates, mock-up.
