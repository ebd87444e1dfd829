"""Occupancy fields: ground truth from shapes, meshes and voxel files; IoU; surfaces."""

import numpy as np
import pytest
import trimesh

from nfscale import surfaces
from nfscale.data import meshes, shapes

# Mesh facets lie within this distance of the analytic surface for the meshes below
# (sagitta of the coarsest facet is < 0.004); points farther than it must agree exactly.
FACET_MARGIN = 0.02


def _random_points(n=3000, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, 3))


def test_iou_of_a_shape_with_itself_is_one():
  grid = shapes.occupancy_grid(shapes.procedural_solid("trophy"), 32)
  assert grid.any()
  assert surfaces.grid_iou(grid, grid) == 1.0


@pytest.mark.parametrize("shift", [1, 3, 5])
def test_iou_with_a_shifted_copy_matches_the_analytic_value(shift):
  # A box of side a shifted by d along x: IoU = (a - d) / (a + d), exact on a voxel grid.
  a = 12
  box = np.zeros((32, 32, 32), bool)
  box[8 : 8 + a, 10:20, 5:25] = True
  moved = np.roll(box, shift, axis=0)
  assert surfaces.grid_iou(box, moved, chunk=1000) == pytest.approx((a - shift) / (a + shift))


def test_iou_of_two_spheres_matches_the_lens_volume():
  # Two radius-r balls d apart: the lens volume pi (4r + d)(2r - d)^2 / 12. On a 96^3 grid
  # the voxelised volumes are within ~2% of the true ones (surface voxels ~ 6% of the ball).
  r, d = 0.5, 0.3
  s1 = shapes.Solid("a", lambda p: shapes.sdf_sphere(p, (-d / 2, 0, 0), r) <= 0)
  s2 = shapes.Solid("b", lambda p: shapes.sdf_sphere(p, (d / 2, 0, 0), r) <= 0)
  lens = np.pi * (4 * r + d) * (2 * r - d) ** 2 / 12
  ball = 4 / 3 * np.pi * r**3
  expected = lens / (2 * ball - lens)
  got = surfaces.grid_iou(shapes.occupancy_grid(s1, 96), shapes.occupancy_grid(s2, 96))
  assert got == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("kind", ["sphere", "torus"])
def test_mesh_occupancy_agrees_with_the_analytic_inside_test(kind, tmp_path):
  if kind == "sphere":
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.6)
    sdf = lambda p: shapes.sdf_sphere(p, radius=0.6)  # noqa: E731
  else:
    mesh = trimesh.creation.torus(0.5, 0.2, major_sections=48, minor_sections=24)
    sdf = lambda p: shapes.sdf_torus(p, 0.5, 0.2)  # noqa: E731
  path = str(tmp_path / f"{kind}.ply")
  mesh.export(path)
  solid = meshes.mesh_solid(path, normalize=False)
  pts = np.concatenate([_random_points(), shapes.grid_points(16)])
  got = solid.inside(pts)
  dist = sdf(pts)
  far = np.abs(dist) > FACET_MARGIN
  assert far.sum() > 0.9 * len(pts)
  np.testing.assert_array_equal(got[far], dist[far] <= 0)
  # The accelerated test equals the exact winding-number sum everywhere.
  exact = meshes.winding_numbers(pts, mesh.triangles) > 0.5
  np.testing.assert_array_equal(got, exact)


def test_non_watertight_mesh_gives_nearly_the_same_occupancy():
  mesh = trimesh.creation.torus(0.5, 0.2, major_sections=48, minor_sections=24)
  keep = np.ones(len(mesh.faces), bool)
  keep[np.random.default_rng(0).choice(len(mesh.faces), 12, replace=False)] = False
  holey = trimesh.Trimesh(mesh.vertices, mesh.faces[keep], process=False)
  assert mesh.is_watertight and not holey.is_watertight
  pts = shapes.grid_points(24)
  full = meshes.MeshInside(mesh.vertices, mesh.faces)(pts)
  open_ = meshes.MeshInside(holey.vertices, holey.faces)(pts)
  # 12 of 2304 faces missing: only points next to a hole may change side (< 0.5% of the
  # grid); ray parity would flip whole lines through each hole.
  assert full.sum() > 500
  assert np.mean(full != open_) < 0.005


def test_voxel_file_round_trip(tmp_path):
  grid = shapes.occupancy_grid(shapes.procedural_solid("torus"), 24)
  path = str(tmp_path / "torus.npy")
  np.save(path, grid)
  solid = meshes.file_solid(path)
  np.testing.assert_array_equal(shapes.occupancy_grid(solid, 24), grid)


def test_training_points_mix_grid_and_surface():
  solid = shapes.procedural_solid("sphere")
  x, y = shapes.training_points(solid, 16, 500, seed=1)
  assert x.shape == (16**3 + 500, 3) and y.shape == (16**3 + 500, 1)
  assert set(np.unique(y)) == {0.0, 1.0}
  # Near-surface points are within ~1.8 voxels of the sphere (jitter 1 voxel per axis).
  near = np.abs(shapes.sdf_sphere(x[16**3 :], radius=0.6))
  assert near.max() < 2 * 2 / 15
  np.testing.assert_array_equal(y[16**3 :, 0], shapes.sdf_sphere(x[16**3 :], radius=0.6) <= 0)


def test_marching_cubes_and_ply_export(tmp_path):
  grid = shapes.occupancy_grid(shapes.procedural_solid("sphere"), 32).astype(np.float32)
  v, f = surfaces.marching_cubes(grid)
  radii = np.linalg.norm(v, axis=1)
  assert np.all(np.abs(radii - 0.6) < 2 * 2 / 31)
  path = surfaces.save_ply(str(tmp_path / "s.ply"), v, f)
  back = trimesh.load(path, process=False)
  assert back.is_watertight and len(back.faces) == len(f)
  empty_v, empty_f = surfaces.marching_cubes(np.zeros((8, 8, 8)))
  assert empty_v.shape == (0, 3) and empty_f.shape == (0, 3)


# ---- bad input: a clear one-line message naming the file --------------------------------


def test_missing_file(tmp_path):
  path = str(tmp_path / "nope.obj")
  with pytest.raises(ValueError, match="nope.obj' does not exist"):
    meshes.file_solid(path)


def test_unsupported_format(tmp_path):
  path = tmp_path / "shape.xyz"
  path.write_text("1 2 3\n")
  with pytest.raises(ValueError, match=r"shape.xyz' has unsupported format '.xyz'.*\.obj"):
    meshes.file_solid(str(path))


def test_unreadable_mesh(tmp_path):
  path = tmp_path / "broken.stl"
  path.write_bytes(b"\x00garbage")
  with pytest.raises(ValueError, match="broken.stl"):
    meshes.file_solid(str(path))


def test_mesh_with_no_volume(tmp_path):
  plane = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]])
  path = str(tmp_path / "flat.obj")
  plane.export(path)
  with pytest.raises(ValueError, match="flat.obj' has no volume"):
    meshes.file_solid(path)


@pytest.mark.parametrize(
    "array, problem",
    [
        (np.zeros((4, 4)), "3-D array"),
        (np.zeros((4, 4, 1)), "every side >= 2"),
        (np.full((4, 4, 4), "a"), "dtype"),
        (np.full((4, 4, 4), 2.0), "outside \\[0, 1\\]"),
        (np.zeros((4, 4, 4)), "no occupied voxel"),
    ],
)
def test_bad_voxel_files(tmp_path, array, problem):
  path = str(tmp_path / "vox.npy")
  np.save(path, array)
  with pytest.raises(ValueError, match=f"vox.npy.*{problem}"):
    meshes.file_solid(path)


def test_mat_voxels(tmp_path):
  from scipy import io as sio

  grid = np.zeros((8, 8, 8), np.uint8)
  grid[2:6, 2:6, 2:6] = 1
  path = str(tmp_path / "v.mat")
  sio.savemat(path, {"occ": grid, "other": np.zeros(3)})
  solid = meshes.file_solid(path)
  np.testing.assert_array_equal(shapes.occupancy_grid(solid, 8), grid.astype(bool))
  sio.savemat(path, {"a": grid, "b": grid})
  with pytest.raises(ValueError, match="v.mat' must hold exactly one 3-D array"):
    meshes.file_solid(path)


def test_unknown_procedural_shape():
  with pytest.raises(ValueError, match="Unknown procedural shape 'cube'; valid names: trophy"):
    shapes.procedural_solid("cube")


def test_render_preview_shows_the_shape():
  grid = shapes.occupancy_grid(shapes.procedural_solid("sphere"), 24)
  img = surfaces.render_preview(grid, size=48)
  assert img.shape == (48, 48)
  fg = img < 1.0
  # A sphere renders as a disc: about pi/4 of its bounding square, centred.
  assert 0.4 < fg.mean() < 0.8 and fg[24, 24]


# ---- the task end to end (the config's test-sized preset) ------------------------------


def _occ_config(arg="tiny"):
  import pathlib
  import sys

  sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))
  from configs import occupancy as cfg

  return cfg.get_config(arg)


def test_occupancy_tiny_run_writes_every_artifact(tmp_path):
  from nfscale import experiment

  c = _occ_config()
  res = experiment.run(c, str(tmp_path))
  names = [
      "config.json",
      "metrics.jsonl",
      "results.json",
      "psnr.png",
      "occupancy.png",
      "table.md",
      "mesh_ground_truth.ply",
  ] + [f"mesh_{s}.ply" for s in c.schemes]
  for name in names:
    assert (tmp_path / name).exists(), name
  assert (tmp_path / "occupancy.png").stat().st_size > 0
  assert trimesh.load(str(tmp_path / "mesh_ground_truth.ply")).is_watertight
  for m in res["members"]:
    assert 0 <= m["iou"] <= 1 and np.isfinite(m["train_psnr"])
  table = (tmp_path / "table.md").read_text()
  assert "| 24.5 | 0.91 |" in table  # the paper's init2 row beside ours


def test_grid_predictions_in_chunks_match_one_pass():
  import jax
  from nfscale.tasks import build_task, occupancy

  task = build_task(_occ_config())
  params = jax.vmap(lambda k: task.model.init(k, task.example_input))(
      jax.random.split(jax.random.key(0), 2)
  )
  whole = occupancy.grid_predictions(task.model, params, 6, chunk=6**3)
  parts = occupancy.grid_predictions(task.model, params, 6, chunk=50)
  assert whole.shape == (2, 6, 6, 6)
  np.testing.assert_array_equal(whole, parts)
  direct = jax.vmap(task.model.apply, in_axes=(0, None))(params, shapes.grid_points(6))
  np.testing.assert_allclose(whole.reshape(2, -1), np.asarray(direct)[..., 0], atol=2e-3)


def test_occupancy_bad_shape_file_fails_before_writing(tmp_path):
  from nfscale import experiment

  c = _occ_config()
  c.data.path = str(tmp_path / "statue.ply")
  with pytest.raises(ValueError, match="statue.ply' does not exist"):
    experiment.run(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "key,value",
    [
        ("jitter", float("inf")),  # numpy's OverflowError, with a traceback
        ("jitter", float("nan")),
        ("grid_res", 1),
        ("eval_res", True),  # int() made it 1
        ("num_surface", -1),
        # Its grid was built after training: the whole run, then a numpy error.
        ("eval_res", 10**6),
        # Its training grid: numpy's "Maximum allowed dimension exceeded", naming no key.
        ("grid_res", 10**12),
    ],
)
def test_occupancy_bad_data_setting_fails_before_writing(tmp_path, key, value):
  from nfscale import experiment

  c = _occ_config()
  c.data[key] = value
  with pytest.raises(ValueError, match=f"config.data.{key}(=| must be)"):
    experiment.run(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_occupancy_training_grid_beyond_memory_fails_before_writing(tmp_path, monkeypatch):
  from nfscale import experiment
  from nfscale.tasks import occupancy

  # A machine of 1 MiB: the 64^3 training grid (17 bytes a point) cannot fit.
  monkeypatch.setattr(occupancy, "_physical_memory", lambda: 2**20)
  c = _occ_config()
  c.data.grid_res = 64
  with pytest.raises(ValueError, match="config.data.grid_res=64 needs .* training points"):
    experiment.run(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
