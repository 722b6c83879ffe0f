// The sign-in page: after signing in, go to the dashboard.
import { adoptFragmentTokens, setupSignIn, signedIn } from './api.js';

function done() {
  location.replace('/dashboard');
}

adoptFragmentTokens();
if (signedIn()) {
  done();
} else {
  setupSignIn(async () => done());
}
