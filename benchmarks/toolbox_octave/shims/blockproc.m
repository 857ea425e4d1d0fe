function out = blockproc(img, blk, fun)
  % Distinct-block processing with the block struct MATLAB passes (bs.data, bs.location); Octave's own
  % blockproc hands the function the data only. Enough for the toolbox's D_lambda.m / D_s.m: the function
  % returns a scalar per block and the image sides are multiples of the block size (they check it).
  nr = ceil(size(img, 1) / blk(1));
  nc = ceil(size(img, 2) / blk(2));
  out = zeros(nr, nc);
  for r = 1:nr
    for c = 1:nc
      rows = (r - 1) * blk(1) + 1 : min(r * blk(1), size(img, 1));
      cols = (c - 1) * blk(2) + 1 : min(c * blk(2), size(img, 2));
      bs.data = img(rows, cols);
      bs.location = [rows(1), cols(1)];
      out(r, c) = fun(bs);
    end
  end
end
