% Golden values of the Wald-protocol simulation (data/wald.py) from the toolbox's own MATLAB code under GNU Octave:
%   octave-cli -q benchmarks/toolbox_octave/wald_values.m TOOLBOX
% TOOLBOX as in golden_values.m (DLPan-Toolbox a34f884, "02-Test-toolbox-for-traditional-and-DL(Matlab)").
% MS at its own scale (HxWxB, the reduced-resolution GT) and PAN at 4x (4H x 4W) from the integer fixture;
% resize_images.m (MTF.m + imresize 'nearest' for the MS, imresize bicubic for the PAN), interp23tap.m for lms,
% MTF_PAN.m + imresize 'nearest' for the PAN-MTF option. Per output: sum, weighted sum (weights 1..numel in
% MATLAB's column-major H x W x C order), first and last element.
addpath(fileparts(mfilename('fullpath')));
TB = toolbox_setup(argv());
cases = {{64, 64, 4, 'QB'}, {64, 64, 8, 'WV3'}, {64, 48, 4, 'GeoEye1'}};  % the last one non-square
for k = 1:numel(cases)
  [H, W, B, sensor] = cases{k}{:};
  ms = fixture(H, W, B);
  [~, ~, pan] = fixture(4 * H, 4 * W, B);
  [ms_lr, pan_lr] = resize_images(ms, pan, 4, sensor);
  lms = interp23tap(ms_lr, 4);
  pan_mtf = imresize(MTF_PAN(pan, sensor, 4), 1/4, 'nearest');
  names = {'ms', 'lms', 'pan', 'pan_mtf'};
  outs = {ms_lr, lms, pan_lr, pan_mtf};
  for j = 1:numel(outs)
    x = outs{j}(:);
    printf('%s %s %s sum %.17g wsum %.17g first %.17g last %.17g\n', sensor, names{j}, ...
           mat2str(size(outs{j})), sum(x), sum(x .* (1:numel(x))'), x(1), x(end));
  end
end
