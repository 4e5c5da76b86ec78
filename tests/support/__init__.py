"""What the tests share: builders of clusters, a fake of the rendered table, kernel and lab helpers,
the np-guard corpus, hostile inputs. Test modules import from here, never from each other."""
