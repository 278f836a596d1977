-- wrk script: each connection waits 8 ms after each response before it
-- sends its next request, so two servers get the same offered load (about
-- 32 / 8.5 ms = 3,700 requests a second at 32 connections), below what
-- either serves at full speed on the machines measured.
function delay()
  return 8
end
