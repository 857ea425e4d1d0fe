function TB = toolbox_setup(args)
  % Shared preamble of golden_values.m and wald_values.m: the Octave packages, the toolbox folder (last
  % command-line argument) with its Tools/ and Quality_Indices/ on the path, then shims/ (added last = first on
  % the path: the shims win over Octave's own).
  pkg load image
  pkg load signal
  TB = args{end};
  here = fileparts(mfilename('fullpath'));
  addpath(fullfile(TB, 'Tools'));
  addpath(fullfile(TB, 'Quality_Indices'));
  addpath(here);
  addpath(fullfile(here, 'shims'));
end
