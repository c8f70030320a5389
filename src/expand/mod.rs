//! Stage 2: expand the matrix into cells and render each cell's link
//! (templates, slugs, UTM-tagged destinations, governance rules).
